"""``planner plan`` and ``planner simulate`` on a real SQLite history written by the store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from planner.cli import main

PLAN_KEYS = {
    "pipeline",
    "concurrency",
    "concurrency_rule",
    "cpu_per_task",
    "run",
    "steps",
    "tasks",
    "interval_s",
    "next_start",
    "what_if",
    "recommendations",
}


T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # the first recorded run (see conftest)


def test_plan_json_on_real_history(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    from planner.history import HistoryStore

    url = history(5)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "planner", "plan", str(pipeline_file), "--db", url),
            *("--models", str(tmp_path / "models"), "--concurrency", "2", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == PLAN_KEYS
    assert doc["pipeline"] == "nightly"
    assert doc["concurrency"] == 2
    assert doc["run"]["critical_path"] == ["1", "2"]
    tasks = {(t["step"], t["account"]): t for t in doc["tasks"]}
    assert set(tasks) == {("1", "a1"), ("1", "a2"), ("1", "a3"), ("1", "a4"), ("2", None)}
    # every task has run 5 times with the same duration: the estimates learn it
    assert tasks[("1", "a1")]["predicted_s"] == pytest.approx(600.0, rel=0.05)
    assert all(t["source"] != "default" for t in tasks.values())
    assert all(t["bound_s"] >= t["predicted_s"] for t in tasks.values())
    # LPT on 2 slots: 600 | 300 + 300, then 200 -> makespan 800, then aggregate 100
    assert doc["steps"][0]["makespan_s"] == pytest.approx(800.0, rel=0.05)
    assert doc["steps"][0]["lower_bound_s"] == pytest.approx(700.0, rel=0.05)
    assert doc["run"]["predicted_s"] == pytest.approx(900.0, rel=0.05)
    assert doc["run"]["bound_s"] >= doc["run"]["predicted_s"]
    assert doc["interval_s"] == pytest.approx(3600.0)  # the 1 h cadence exceeds the bound
    assert {tuple(sorted(w)) for w in doc["what_if"]} == {
        ("concurrency", "makespan_s", "memory_mb")
    }
    assert all(isinstance(r["text"], str) for r in doc["recommendations"])
    with HistoryStore(url) as store:
        stored = store.plans("nightly")
    assert len(stored) == 1
    assert stored[0].predicted_s == pytest.approx(doc["run"]["predicted_s"])
    assert stored[0].document["run"] == doc["run"]


def test_plan_human_output(
    pipeline_file: Path,
    history: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = history(3)
    code = main(["plan", str(pipeline_file), "--db", url, "--models", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert code == 0
    assert "critical path: 1 -> 2" in out
    assert "next start:" in out
    assert "what if" in out


def test_plan_unknown_account_is_bad_input(
    pipeline_file: Path, history: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = history(1)
    code = main(["plan", str(pipeline_file), "--db", url, "--accounts", "a1,zz", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.strip() == "planner: error: --accounts: unknown account(s): zz"


def test_stored_plans_calibrate_the_run_bound(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    from planner.commands.plan import compute_plan, past_runs
    from planner.config import load_pipeline
    from planner.history import HistoryStore

    url = history(12, scale=lambda r: 1.0 + 0.02 * (r % 5))
    pipeline = load_pipeline(pipeline_file)
    with HistoryStore(url) as store:
        for r in range(12):  # a plan made just before each run, stored without its run id
            created = T0 + timedelta(days=r) - timedelta(minutes=5)
            store.save_plan("nightly", None, created, 1000.0, 1250.0, {"run": r})
        runs = past_runs(store, "nightly")
        assert [p.predicted_s for p in runs] == [1000.0] * 12
        plan = compute_plan(
            pipeline, store, models=tmp_path / "m", now=T0 + timedelta(days=20), concurrency=2
        )
    assert plan.run.calibration_runs == 12
    # the recorded runs took 1500 s x (1 .. 1.08) against 1000 s planned; with 12 runs a
    # 95 % conformal rank (13) exceeds n, so the largest ratio is used, and said so
    assert plan.run.factor == pytest.approx(1.62)
    assert plan.run.bound_s == pytest.approx(plan.run.predicted_s * 1.62)
    assert plan.run.bound_rule.startswith("largest actual/predicted of 12 past runs")


def test_planning_summary_for_validate(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    from planner.commands.plan import planning_summary
    from planner.config import load_pipeline
    from planner.history import HistoryStore

    pipeline = load_pipeline(pipeline_file)
    absent = tmp_path / "absent.db"
    assert planning_summary(pipeline, db=f"sqlite:///{absent}", models=tmp_path / "m") is None
    assert not absent.exists()  # validating does not create a history
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    HistoryStore(empty).close()
    assert planning_summary(pipeline, db=empty, models=tmp_path / "m") is None
    url = history(3)
    summary = planning_summary(pipeline, db=url, models=tmp_path / "m", now=T0)
    assert summary is not None
    assert summary["interval_s"] == pytest.approx(3600.0)
    assert summary["lines"][0].startswith("estimated run:")
    assert summary["critical_path"] == ["1", "2"]
    only = planning_summary(pipeline, db=url, models=tmp_path / "m", now=T0, steps=["1"])
    assert only is not None and only["critical_path"] == ["1"]  # the selection, as validated
    assert only["predicted_s"] < summary["predicted_s"]


def test_demo_plan_stage_prints_next_start(
    pipeline_file: Path,
    history: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from planner.commands.plan import demo_plan_stage
    from planner.config import load_pipeline
    from planner.history import HistoryStore

    url = history(3)
    reads: list[str | None] = []
    read = HistoryStore.attempts_frame

    def counted(self: HistoryStore, pipeline: str | None = None, **kw: Any) -> Any:
        reads.append(pipeline)
        return read(self, pipeline, **kw)

    monkeypatch.setattr(HistoryStore, "attempts_frame", counted)
    lines: list[str] = []
    plan = demo_plan_stage(
        load_pipeline(pipeline_file), db=url, models=tmp_path / "m", now=T0, write=lines.append
    )
    text = "\n".join(lines)
    assert "next start: " + (T0 + timedelta(hours=1)).isoformat() in text
    assert plan.interval.next_start == T0 + timedelta(hours=1)
    with HistoryStore(url) as store:
        assert len(store.plans("nightly")) == 1
    assert reads == ["nightly"]  # training and planning share one read of the history


def test_simulate_json(history: Callable[..., str], capsys: pytest.CaptureFixture[str]) -> None:
    url = history(8, scale=lambda r: 1.0 + 0.05 * r)
    code = main(["simulate", "--pipeline", "nightly", "--db", url, "--cadence", "auto", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["series"] == 1
    assert set(doc["policies"]) == {"fixed", "avg10_x1.2", "planner", "oracle"}
    assert doc["policies"]["oracle"]["runs"] == 5  # the first 30 % (3 of 8 runs) trains
    assert doc["policies"]["oracle"]["collisions"] == 0
    code = main(["simulate", "--pipeline", "nightly", "--db", url, "--by", "step", "--json"])
    assert json.loads(capsys.readouterr().out)["series"] == 2


def test_simulate_unknown_pipeline_is_bad_input(
    history: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--pipeline", "nope", "--db", history(1)])
    assert code == 2
    assert "no finished attempts of pipeline 'nope'" in capsys.readouterr().err


def test_a_plan_stored_with_its_run_is_that_runs_plan(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    from planner.commands.plan import compute_plan, past_runs, store_plan
    from planner.config import load_pipeline
    from planner.history import HistoryStore

    url = history(3)
    with HistoryStore(url) as store:
        plan = compute_plan(load_pipeline(pipeline_file), store, models=tmp_path / "m", now=T0)
        store.save_plan("nightly", None, T0 - timedelta(minutes=1), 5.0, 6.0, {})
        document = store_plan(store, plan, run_id="run-0")
        runs = past_runs(store, "nightly")
    assert document["run"]["predicted_s"] == pytest.approx(plan.run.predicted_s)
    by_id = {r.run_id: r for r in runs}
    assert by_id["run-0"].predicted_s == pytest.approx(plan.run.predicted_s)  # not the loose 5.0
    assert by_id["run-1"].predicted_s is None


def test_a_run_without_its_own_plan_takes_the_newest_loose_plan_since_the_previous_run(
    history: Callable[..., str],
) -> None:
    from planner.commands.plan import past_runs
    from planner.history import HistoryStore

    url = history(4)  # run-r starts at T0 + r days
    day = timedelta(days=1)
    with HistoryStore(url) as store:
        for created, predicted in [
            (T0 - timedelta(hours=2), 1.0),  # before run-0: older than the next one
            (T0 - timedelta(hours=1), 2.0),  # before run-0: the newest, taken
            (T0 + day, 3.0),  # exactly at run-1's start: taken
            (T0 + 3 * day + timedelta(seconds=1), 4.0),  # after run-3 started: for no run
        ]:
            store.save_plan("nightly", None, created, predicted, predicted, {})
        runs = past_runs(store, "nightly")
    by_id = {r.run_id: r.predicted_s for r in runs}
    # run-2 and run-3 had no plan since the previous run started: none is reused
    assert by_id == {"run-0": 2.0, "run-1": 3.0, "run-2": None, "run-3": None}
