"""planner.analysis.quality on a history made by real runs: a tiny pipeline (real
subprocesses, a real SQLite history) run six times through the service layer, each run by
its plan; the numbers checked against the drift check, the holdout of ``planner train``
and sums done by hand."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure

from planner.analysis.quality import (
    METRICS,
    PLANNED_COLUMNS,
    coverage_over_time,
    holdout_comparison,
    permutation_importance,
    plan_quality,
    planned_vs_actual,
    plot_coverage,
    plot_error_per_step,
    plot_importance,
    plot_predicted_vs_actual,
)
from planner.config import load_pipeline
from planner.errors import PlannerError
from planner.history import HistoryStore
from planner.learning.evaluation import holdout_features
from planner.learning.training import holdout_evaluation
from planner.monitoring.drift import planned_tasks, prediction_quality
from planner.service import Instance
from planner.service.running import prepare_run
from planner.service.training import train

PIPELINE = "quality"
RUNS = 6
#: Seconds each account's task sleeps, times the run's factor.
SLEEPS = {"a1": 0.05, "a2": 0.15, "a3": 0.1, "a4": 0.25}
FACTORS = (1.0, 1.3, 0.8, 1.1, 0.9, 1.2)
JOB = """\
import json, sys, time
from pathlib import Path
spec = json.loads(Path(sys.argv[1]).read_text())
time.sleep(spec["sleeps"].get(sys.argv[2], 0.05) * spec["factor"])
"""


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a history of ``RUNS`` real runs of a two-step pipeline: ``work`` per
    account (sleeps), then ``sum``; each run planned and stored with its plan."""
    from planner.execution import RunRequest

    folder = tmp_path_factory.mktemp("quality")
    (folder / "job.py").write_text(JOB, encoding="utf-8")
    spec = folder / "spec.json"
    command = [sys.executable, str(folder / "job.py"), str(spec)]
    raw = {
        "name": PIPELINE,
        "accounts": list(SLEEPS),
        "state_dir": str(folder / "state"),
        "concurrency": {"max": 2},
        "steps": [
            {"id": "work", "command": [*command, "{account}"], "per_account": True},
            {"id": "sum", "command": [*command, "sum"], "depends_on": ["work"]},
        ],
    }
    path = folder / "quality.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    pipeline = load_pipeline(path)
    db = f"sqlite:///{folder / 'state' / 'history.db'}"
    with Instance.for_pipeline(pipeline, db=db, models=folder / "models") as instance:
        for factor in FACTORS[:RUNS]:
            spec.write_text(json.dumps({"sleeps": SLEEPS, "factor": factor}), encoding="utf-8")
            outcome = prepare_run(instance, pipeline, RunRequest()).execute()
            assert outcome.result.status == "succeeded"
        url = instance.store.url
    yield url


def test_planned_vs_actual_is_the_drift_checks_rows_with_times(history: str) -> None:
    frame = planned_vs_actual(history, PIPELINE)
    assert list(frame.columns) == [c.name for c in PLANNED_COLUMNS]
    for column in PLANNED_COLUMNS:
        assert str(frame[column.name].dtype) == column.dtype, column.name
    with HistoryStore(history) as store:
        rows = planned_tasks(store, PIPELINE)
        first = min(store.list_runs(PIPELINE), key=lambda r: r.started_at)
    got = sorted(
        zip(
            frame["run_id"],
            frame["step"],
            frame["predicted_s"],
            frame["bound_s"],
            frame["duration_s"],
            strict=True,
        )
    )
    assert got == sorted(rows)
    # the first run had no history: every task planned at the default, left out
    assert first.run_id not in set(frame["run_id"])
    assert len(frame) == (RUNS - 1) * (len(SLEEPS) + 1)
    assert frame["finished_at"].is_monotonic_increasing
    assert (frame["within_bound"] == (frame["duration_s"] <= frame["bound_s"])).all()
    ape = (frame["predicted_s"] - frame["duration_s"]).abs() / frame["duration_s"]
    np.testing.assert_allclose(frame["ape"], ape)
    assert set(frame.loc[frame["step"] == "work", "account"]) == set(SLEEPS)
    assert frame.loc[frame["step"] == "sum", "account"].isna().all()
    assert frame["estimate"].str.startswith("last").all()  # baselines: under 200 attempts
    # the last ``runs`` runs only; an open store works as a source too
    with HistoryStore(history) as store:
        last = planned_vs_actual(store, PIPELINE, runs=2)
    assert last["run_id"].nunique() == 2 and len(last) == 2 * (len(SLEEPS) + 1)


def test_coverage_is_the_share_within_bound_counted_by_hand(history: str) -> None:
    frame = planned_vs_actual(history, PIPELINE)
    window = 7
    coverage = coverage_over_time(frame, window, target=0.9)
    hits = frame["within_bound"].tolist()
    assert len(coverage) == len(frame)
    for i in range(len(hits)):
        recent = hits[max(0, i - window + 1) : i + 1]
        assert coverage["coverage"].iloc[i] == pytest.approx(sum(recent) / len(recent))
        assert coverage["tasks"].iloc[i] == len(recent)
        assert coverage["cumulative"].iloc[i] == pytest.approx(sum(hits[: i + 1]) / (i + 1))
    assert (coverage["target"] == 0.9).all()
    # the whole history's share is the drift check's coverage (prediction_quality)
    with HistoryStore(history) as store:
        rows = [(r, p, b, a) for r, _s, p, b, a in planned_tasks(store, PIPELINE)]
    quality = prediction_quality(rows)
    assert coverage["cumulative"].iloc[-1] == pytest.approx(quality.coverage)
    assert plan_quality(frame) == {
        "runs": quality.runs,
        "tasks": quality.tasks,
        "mdape": pytest.approx(quality.mdape),
        "coverage": pytest.approx(quality.coverage),
    }
    # a time window: the runs took seconds, so an hour holds every earlier task
    by_time = coverage_over_time(frame, "1h")
    np.testing.assert_allclose(by_time["coverage"], by_time["cumulative"])
    assert by_time["tasks"].tolist() == list(range(1, len(frame) + 1))
    with pytest.raises(ValueError, match="window"):
        coverage_over_time(frame, 0)


def test_holdout_comparison_is_the_evaluation_of_planner_train(
    history: str, tmp_path: Path
) -> None:
    comparison = holdout_comparison(history, PIPELINE, 0.3)
    with HistoryStore(history) as store:
        frame = store.attempts_frame(PIPELINE).reset_index(drop=True)
    expected = holdout_evaluation(frame, holdout=0.3)
    table = comparison.table
    assert list(table.index) == ["model", "last2", "last10", "last10_x1.2"]
    assert list(table.columns) == list(METRICS)
    for method, scores in expected.methods.items():
        assert table.loc[method].to_dict() == pytest.approx(scores)
    assert table["n"].tolist() == [expected.rows_test] * 4
    assert comparison.variant == expected.variant
    assert comparison.evaluation.baselines_only  # 30 attempts: under the 200 of boosting
    # per step: one row per (step, method), the evaluation's figures
    per_step = comparison.per_step
    assert len(per_step) == len(expected.per_step) * 4
    for row in per_step.itertuples(index=False):
        assert {k: getattr(row, k) for k in METRICS} == pytest.approx(
            expected.per_step[str(row.step)][str(row.method)]
        )
    assert per_step.groupby("method")["n"].sum().tolist() == [expected.rows_test] * 4
    # and `planner train` (the service's use case) reports the same figures
    with Instance(HistoryStore(history), tmp_path / "models") as instance:
        (result,) = train(instance, PIPELINE, holdout=0.3)
    for method, scores in result.methods.items():
        for key, value in scores.items():
            assert value == pytest.approx(table.loc[method, key], nan_ok=True), (method, key)


def test_permutation_importance_one_row_per_leak_free_feature(history: str) -> None:
    importance = permutation_importance(history, PIPELINE, 0.3, n_repeats=3)
    with HistoryStore(history) as store:
        frame = store.attempts_frame(PIPELINE).reset_index(drop=True)
    features = holdout_features(frame, 0.3).features.columns
    assert list(importance.columns) == ["feature", "importance", "std", "in_trees"]
    assert sorted(importance["feature"]) == sorted(map(str, features))
    assert importance["feature"].is_unique
    assert importance["importance"].is_monotonic_decreasing
    assert np.isfinite(importance["importance"]).all() and (importance["std"] >= 0).all()
    # baselines only: no tree reads anything, the grouped last-2 mean carries the model
    assert not importance["in_trees"].any()
    top = importance.iloc[0]
    assert top["importance"] > 0 and top["feature"].startswith("h.")
    context = importance.set_index("feature").loc[["hour", "weekday", "running"], "importance"]
    assert (context == 0).all()  # the baselines never read them
    again = permutation_importance(history, PIPELINE, 0.3, n_repeats=3)
    pd.testing.assert_frame_equal(importance, again)  # seeded


def test_plots_return_figures(history: str) -> None:
    frame = planned_vs_actual(history, PIPELINE)
    comparison = holdout_comparison(history, PIPELINE)
    importance = permutation_importance(history, PIPELINE, n_repeats=2)
    figures = [
        plot_predicted_vs_actual(frame),
        plot_coverage(coverage_over_time(frame, 10)),
        plot_error_per_step(comparison),
        plot_error_per_step(comparison, "overrun"),
        plot_importance(importance, top=5),
        plot_predicted_vs_actual(frame.iloc[:0]),
        plot_coverage(coverage_over_time(frame.iloc[:0])),
    ]
    for figure in figures:
        assert isinstance(figure, Figure)
        figure.savefig(io.BytesIO(), format="png")
    scatter = figures[0].axes[0]
    assert scatter.get_xscale() == "log" and scatter.get_yscale() == "log"
    assert f"{len(frame)} tasks of {RUNS - 1} runs" in scatter.get_title()
    bars = figures[2].axes[0]
    assert [t.get_text() for t in bars.get_yticklabels()] == sorted(
        set(comparison.per_step["step"]),
        key=lambda s: (-comparison.evaluation.per_step[s]["model"]["n"], s),
    )
    with pytest.raises(ValueError, match="metric"):
        plot_error_per_step(comparison, "nope")


def test_unknown_pipeline_and_bad_holdout_say_why(history: str) -> None:
    with pytest.raises(PlannerError, match="no attempts"):
        holdout_comparison(history, "nope")
    with pytest.raises(PlannerError, match="holdout"):
        holdout_comparison(history, PIPELINE, 1.5)
    nothing = planned_vs_actual(history, "nope")
    assert nothing.empty and list(nothing.columns) == [c.name for c in PLANNED_COLUMNS]
    assert coverage_over_time(nothing).empty
