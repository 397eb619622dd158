"""The planning use case of the service layer (:mod:`planner.service.planning`) on a real
SQLite history, with a fake clock and a fixed machine (the constructor arguments a front
end passes, with test values)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from planner.clock import FakeClock
from planner.config import load_pipeline
from planner.history import HistoryStore
from planner.service import FixedMachine, Instance, MachineState
from planner.service.planning import (
    PlanRequest,
    make_plan,
    past_runs,
    planning_summary,
    save_plan,
)

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # the first recorded run (see conftest)
MACHINE = FixedMachine(MachineState(cpu_count=4, free_memory_mb=8000.0))


def _instance(url: str, models: Path) -> Instance:
    clock = FakeClock(T0 + timedelta(days=30))
    return Instance(HistoryStore(url, clock=clock), models, clock=clock, machine=MACHINE)


def test_plans_stored_with_their_runs_calibrate_the_run_bound(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    url = history(12, scale=lambda r: 1.0 + 0.02 * (r % 5))
    pipeline = load_pipeline(pipeline_file)
    with _instance(url, tmp_path / "m") as instance:
        store = instance.store
        for r in range(12):  # each run's own plan, stored with its id
            created = T0 + timedelta(days=r)
            store.save_plan("nightly", f"run-{r}", created, 1000.0, 1250.0, {"run": r})
        # a plan made by hand, not tied to a run: it calibrates nothing
        store.save_plan("nightly", None, T0 + timedelta(days=3), 1.0, 1.0, {})
        runs = past_runs(store, "nightly")
        assert [p.predicted_s for p in runs] == [1000.0] * 12
        plan = make_plan(instance, pipeline, PlanRequest(concurrency=2))
    assert plan.created_at == T0 + timedelta(days=30)  # the instance's clock
    assert plan.run.calibration_runs == 12
    # the recorded runs took 1500 s x (1 .. 1.08) against 1000 s planned; with 12 runs a
    # 95 % conformal rank (13) exceeds n, so the largest ratio is used, and said so
    assert plan.run.factor == pytest.approx(1.62)
    assert plan.run.bound_s == pytest.approx(plan.run.predicted_s * 1.62)
    assert plan.run.bound_rule.startswith("largest actual/predicted of 12 past runs")


def test_a_run_without_its_own_plan_has_no_prediction(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    url = history(3)
    with _instance(url, tmp_path / "m") as instance:
        plan = make_plan(instance, load_pipeline(pipeline_file))
        instance.store.save_plan("nightly", None, T0 - timedelta(minutes=1), 5.0, 6.0, {})
        document = save_plan(instance.store, plan, run_id="run-0")
        runs = past_runs(instance.store, "nightly")
    assert document["run"]["predicted_s"] == pytest.approx(plan.run.predicted_s)
    by_id = {r.run_id: r for r in runs}
    assert by_id["run-0"].predicted_s == pytest.approx(plan.run.predicted_s)
    assert by_id["run-1"].predicted_s is None
    assert by_id["run-2"].predicted_s is None


def test_the_machine_reaches_planning_as_a_value(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    """``auto`` concurrency follows the probe's cores (the file's 2 replaced by auto)."""
    import yaml

    data = yaml.safe_load(pipeline_file.read_text())
    data["concurrency"] = {"max": "auto"}
    pipeline_file.write_text(yaml.safe_dump(data))
    pipeline = load_pipeline(pipeline_file)
    url = history(3)
    answers = {}
    for cores in (2, 4):
        machine = FixedMachine(MachineState(cpu_count=cores, free_memory_mb=64000.0))
        with Instance(HistoryStore(url), tmp_path / "m", machine=machine) as instance:
            answers[cores] = make_plan(instance, pipeline, now=T0).concurrency
    # history without CPU figures: one core per task, cores - 1
    assert answers == {2: 1, 4: 3}


def test_plan_of_only_some_tasks(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    """A resumed run plans only what is left."""
    from planner.execution import TaskKey

    url = history(3)
    with _instance(url, tmp_path / "m") as instance:
        plan = make_plan(
            instance,
            load_pipeline(pipeline_file),
            PlanRequest(tasks=[TaskKey("1", "a2"), TaskKey("2")]),
        )
    assert sorted((t.step, t.account or "") for t in plan.tasks) == [("1", "a2"), ("2", "")]
    assert plan.run.predicted_s == pytest.approx(400.0, rel=0.05)  # 300 s, then 100 s


def test_planning_summary_for_validate(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    pipeline = load_pipeline(pipeline_file)
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with _instance(empty, tmp_path / "m") as instance:
        assert planning_summary(instance, pipeline) is None
    url = history(3)
    with _instance(url, tmp_path / "m") as instance:
        summary = planning_summary(instance, pipeline, now=T0)
        only = planning_summary(instance, pipeline, now=T0, steps=["1"])
        stored = instance.store.plans("nightly")
    assert summary is not None
    assert summary["interval_s"] == pytest.approx(3600.0)
    assert summary["lines"][0].startswith("estimated run:")
    assert summary["critical_path"] == ["1", "2"]
    assert only is not None and only["critical_path"] == ["1"]  # the selection, as validated
    assert only["predicted_s"] < summary["predicted_s"]
    assert stored == []  # validating stores nothing
