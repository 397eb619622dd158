"""The analysis frames read the history the runs wrote: the store's own records, typed as
their docstrings say, from a URL, a store or an instance alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from planner.analysis import history as analysis
from planner.analysis.columns import Column
from planner.commands.demo import DEMO_RUNS
from planner.errors import InputFileError
from planner.history import FRAME_DTYPES, HistoryStore
from planner.monitoring.drift import planned_tasks
from planner.service import Instance
from planner.service.demo import DEMO_DIR_ENV, DEMO_PIPELINE, DEMO_SCALES, default_demo_dir

if TYPE_CHECKING:
    from tests.analysis.conftest import SmallHistory


def _typed_as(frame: pd.DataFrame, spec: tuple[Column, ...]) -> None:
    assert list(frame.columns) == [c.name for c in spec]
    assert {c: str(t) for c, t in frame.dtypes.items()} == {c.name: c.dtype for c in spec}


def test_attempts_are_the_stores_frame_and_its_spec_is_the_contract(
    small_history: SmallHistory,
) -> None:
    frame = analysis.attempts(small_history.url, "tiny")
    with HistoryStore(small_history.url) as store:
        pd.testing.assert_frame_equal(frame, store.attempts_frame(pipeline="tiny"))
    assert {c.name: c.dtype for c in analysis.ATTEMPT_COLUMNS} == FRAME_DTYPES
    _typed_as(frame, analysis.ATTEMPT_COLUMNS)
    assert set(frame["run_id"]) == set(small_history.tiny_runs)
    assert analysis.attempts.__doc__ is not None
    assert all(c.name in analysis.attempts.__doc__ for c in analysis.ATTEMPT_COLUMNS)


def test_runs_carry_their_plan_and_task_counts(small_history: SmallHistory) -> None:
    frame = analysis.runs(small_history.url, "tiny")
    _typed_as(frame, analysis.RUN_COLUMNS)
    assert tuple(frame["run_id"]) == small_history.tiny_runs  # oldest first
    assert frame["started_at"].is_monotonic_increasing
    with HistoryStore(small_history.url) as store:
        predictions = store.run_predictions(pipeline="tiny")
        for row in frame.itertuples(index=False):
            record = store.get_run(row.run_id)
            assert record is not None and record.finished_at is not None
            assert row.duration_s == pytest.approx(
                (record.finished_at - record.started_at).total_seconds()
            )
            assert (row.predicted_s, row.bound_s) == pytest.approx(predictions[row.run_id])
            assert row.bound_s >= row.predicted_s > 0
            assert row.tasks == sum(store.run_task_counts(row.run_id).values()) == 9
    assert (frame["tasks_succeeded"] == 9).all() and (frame["tasks_failed"] == 0).all()
    assert (frame["concurrency"] == 2).all() and (frame["status"] == "succeeded").all()
    both = analysis.runs(small_history.url)
    assert set(both["pipeline"]) == {"tiny", "other"} and len(both) == len(frame) + 1
    assert analysis.runs.__doc__ is not None and "tasks_timed_out" in analysis.runs.__doc__


def test_plans_and_their_tasks_are_the_stored_documents(small_history: SmallHistory) -> None:
    frame = analysis.plans(small_history.url, "tiny")
    _typed_as(frame, analysis.PLAN_COLUMNS)
    assert tuple(frame["run_id"]) == small_history.tiny_runs  # one per run, oldest first
    assert (frame["tasks"] == 9).all() and (frame["concurrency"] == 2).all()
    runs = analysis.runs(small_history.url, "tiny")
    assert list(frame["predicted_s"]) == pytest.approx(list(runs["predicted_s"]))
    assert all(isinstance(d, dict) and "what_if" in d for d in frame["document"])

    tasks = analysis.plan_tasks(small_history.url, "tiny")
    _typed_as(tasks, analysis.PLAN_TASK_COLUMNS)
    assert len(tasks) == 9 * len(small_history.tiny_runs)
    with HistoryStore(small_history.url) as store:
        house = planned_tasks(store, "tiny", run_ids=small_history.tiny_runs)
    known = tasks[tasks["estimate"] != "default"]
    by_task: dict[tuple[str, str], set[tuple[float, float]]] = {}
    for r in known.itertuples(index=False):
        by_task.setdefault((r.run_id, r.step), set()).add((r.predicted_s, r.bound_s))
    assert house  # the drift check's own reading of the same plans
    for run_id, step, predicted, bound, _actual in house:
        assert (predicted, bound) in by_task[(run_id, step)]
    last = analysis.plan_tasks(small_history.url, "tiny", small_history.tiny_runs[-1])
    assert len(last) == 9 and set(last["run_id"]) == {small_history.tiny_runs[-1]}
    assert set(last["step"]) == {"prep", "work", "sum"}
    assert last.loc[last["step"] == "sum", "account"].isna().all()


def test_alerts_and_decisions_oldest_first(small_history: SmallHistory) -> None:
    alerts = analysis.alerts(small_history.url)
    _typed_as(alerts, analysis.ALERT_COLUMNS)
    (alert,) = alerts.itertuples(index=False)
    assert (alert.kind, alert.step, alert.account, alert.sinks) == ("task_late", "prep", "a3", 1)
    assert alert.run_id == small_history.tiny_runs[-1] and alert.bound_s == 0.25

    decisions = analysis.decisions(small_history.url)
    _typed_as(decisions, analysis.DECISION_COLUMNS)
    assert list(decisions["kind"]) == ["deferred", "refused"]
    assert decisions["at"].is_monotonic_increasing
    deferral = decisions.iloc[0]
    assert deferral["pipeline"] == "other" and deferral["run_id"] == small_history.other_run
    assert deferral["detail"]["holder_pid"] > 0 and "deferred" in deferral["reason"]
    assert list(analysis.decisions(small_history.url, "tiny")["kind"]) == ["refused"]


def test_a_store_or_an_instance_reads_the_same(small_history: SmallHistory) -> None:
    expected = analysis.runs(small_history.url)
    with HistoryStore(small_history.url) as store:
        pd.testing.assert_frame_equal(analysis.runs(store), expected)
        instance = Instance(store, Path("unused-models"))
        pd.testing.assert_frame_equal(analysis.runs(instance), expected)
        assert len(analysis.attempts(store)) == store.count_attempts()
    with analysis.open_history(small_history.url) as store:
        assert isinstance(store, HistoryStore)


def test_a_missing_history_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nothing" / "history.db"
    with pytest.raises(InputFileError, match="no history there"):
        analysis.open_history(f"sqlite:///{missing}")
    with pytest.raises(InputFileError):
        analysis.runs(f"sqlite:///{missing}")
    assert not missing.exists()


@pytest.mark.slow
def test_demo_history_is_made_once_where_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "demo"
    monkeypatch.setenv("PLANNER_DB", f"sqlite:///{tmp_path / 'elsewhere.db'}")  # not used
    url = analysis.demo_history(folder, runs=1)
    assert url == f"sqlite:///{folder.resolve() / 'history.db'}"
    assert len(analysis.runs(url, DEMO_PIPELINE)) == 1
    assert analysis.demo_history(folder, runs=1) == url  # made once
    assert len(analysis.runs(url)) == 1
    assert not (tmp_path / "elsewhere.db").exists()
    assert analysis.demo_pipeline_file(folder) == folder.resolve() / "demo.yaml"
    monkeypatch.setenv(DEMO_DIR_ENV, str(folder))
    assert default_demo_dir() == folder.resolve()
    assert analysis.demo_history() == url  # $PLANNER_DEMO_DIR: the same history
    monkeypatch.delenv(DEMO_DIR_ENV)
    assert default_demo_dir() == Path(__file__).resolve().parents[2] / ".planner-demo"


def test_planner_demo_runs_once_per_scale_by_default() -> None:
    assert len(DEMO_SCALES) == DEMO_RUNS  # the command line cannot import the service


def test_importing_the_analysis_is_cheap() -> None:
    code = (
        "import sys\n"
        "import planner.analysis.history, planner.analysis.trends\n"
        "import planner.analysis.gantt, planner.analysis.capacity\n"
        "print(','.join(m for m in ('matplotlib', 'pandas', 'sklearn') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
