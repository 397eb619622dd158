"""build_plan with the tasks' CPU use (``auto`` concurrency), and each step's own span."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from planner.config import Pipeline, parse_pipeline, select_steps
from planner.planning.model import Plan, TaskEstimate
from planner.planning.plan import build_plan, plan_to_json, task_queries

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def make_pipeline(n_accounts: int, **overrides: Any) -> Pipeline:
    raw: dict[str, Any] = {
        "name": "waits",
        "accounts": [f"acct-{i:03d}" for i in range(n_accounts)],
        "schedule": {"cadence": "1m", "policy": "predicted"},
        "concurrency": {"max": "auto"},
        "steps": [{"id": "fetch", "command": ["fetch"], "per_account": True}],
    }
    raw.update(overrides)
    pipeline, issues = parse_pipeline(raw, base_dir=Path("."))
    assert not issues and pipeline is not None
    return pipeline


def plan_with(
    pipeline: Pipeline, estimate: Any, *, cpu_count: int = 2, free_memory_mb: float = 20000.0
) -> Plan:
    """The plan with ``estimate(query)`` as each task's estimate."""
    steps = select_steps(pipeline)
    queries = task_queries(pipeline, steps, concurrency=1)
    return build_plan(
        pipeline,
        steps,
        queries,
        [estimate(q) for q in queries],
        past_runs=[],
        now=NOW,
        cpu_count=cpu_count,
        free_memory_mb=free_memory_mb,
    )


def test_waiting_tasks_run_many_at_once_on_two_cores() -> None:
    """The user's report: 0.06 CPU s per 0.8 s wall; ``auto`` gave 1 on 2 cores and the
    plan advised a longer cadence. With the measured share the run fits its cadence."""
    pipeline = make_pipeline(100)
    waiting = plan_with(pipeline, lambda q: TaskEstimate(0.8, 1.0, "model", 45.0, 0.075))
    assert waiting.cpu_per_task == pytest.approx(0.075)
    assert waiting.concurrency == 13
    assert waiting.concurrency_rule == (
        "auto: CPU 2 cores - 1 = 1 spare core / 0.075 core per task = 13; memory 20000 MB "
        "free x 0.8 / 45 MB per task = 355; at most 100 tasks can run at once -> 13"
    )
    assert waiting.run.predicted_s == pytest.approx(0.8 * 8)  # 100 tasks in 8 rounds of 13
    assert not [r for r in waiting.recommendations if r.kind == "cadence"]
    assert all(w.fits_cpu for w in waiting.what_if if w.concurrency <= 13)
    doc = plan_to_json(waiting)
    assert doc["cpu_per_task"] == 0.075
    assert doc["concurrency_rule"] == waiting.concurrency_rule
    # the same tasks without a measured share: one core per task, and the old advice
    unknown = plan_with(pipeline, lambda q: TaskEstimate(0.8, 1.0, "model", 45.0))
    assert unknown.cpu_per_task is None and unknown.concurrency == 1
    assert "no CPU use measured: one core per task" in unknown.concurrency_rule
    advice = [r for r in unknown.recommendations if r.kind == "cadence"]
    assert advice and "set the cadence to 2m" in advice[0].text


def test_auto_is_capped_by_the_tasks_that_can_run_at_once() -> None:
    plan = plan_with(make_pipeline(8), lambda q: TaskEstimate(60.0, 70.0, "model", 45.0, 0.01))
    assert plan.widest == 8 and plan.concurrency == 8


def test_a_short_computing_step_does_not_hold_back_a_long_waiting_one() -> None:
    """The run's one CPU figure weighs each task by its predicted seconds."""
    pipeline = make_pipeline(
        40,
        steps=[
            {"id": "fetch", "command": ["fetch"], "per_account": True},
            {"id": "sum", "command": ["sum"], "depends_on": ["fetch"]},
        ],
    )

    def estimate(q: Any) -> TaskEstimate:
        if q.step == "sum":
            return TaskEstimate(30.0, 40.0, "model", 45.0, 1.0)
        return TaskEstimate(600.0, 700.0, "model", 45.0, 0.05)

    plan = plan_with(pipeline, estimate, cpu_count=4)
    assert plan.cpu_per_task == pytest.approx((0.05 * 24000 + 30) / 24030)
    assert plan.concurrency == 32  # floor(3 / 0.0512) = 58, ceiling 8 x 4 cores


def test_cpu_bound_tasks_keep_cores_minus_one() -> None:
    plan = plan_with(
        make_pipeline(50), lambda q: TaskEstimate(60.0, 70.0, "model", 45.0, 1.0), cpu_count=8
    )
    assert plan.concurrency == 7


def test_fixed_count_warning_advises_the_auto_count_at_the_share() -> None:
    pipeline = make_pipeline(50, concurrency={"max": 4})
    plan = plan_with(pipeline, lambda q: TaskEstimate(60.0, 70.0, "model", 45.0, 1.0))
    texts = [r.text for r in plan.recommendations if r.kind == "concurrency"]
    assert any(
        "exceeds the CPU fit" in t and t.endswith("use 1 (concurrency.max: auto)") for t in texts
    )
    light = plan_with(pipeline, lambda q: TaskEstimate(60.0, 70.0, "model", 45.0, 0.1))
    assert light.concurrency == 4 and light.warnings == ()


# -- each step's own numbers --------------------------------------------------------------


def two_independent_steps() -> Pipeline:
    """``fetch`` (12 accounts, 1 h each) beside ``report`` (one task of 10 min)."""
    return make_pipeline(
        12,
        schedule={"cadence": "24h", "policy": "predicted"},
        concurrency={"max": 2},
        steps=[
            {"id": "fetch", "command": ["fetch"], "per_account": True},
            {"id": "report", "command": ["report"]},
        ],
    )


def test_a_one_task_step_spans_its_task_not_its_wait_for_a_slot() -> None:
    """Longest first: the 10 min task starts when the twelve 1 h tasks are done (6 h on 2
    slots). Its step takes 10 min, from 6 h to 6 h 10; not a "makespan" of 6 h 10."""

    def estimate(q: Any) -> TaskEstimate:
        return (
            TaskEstimate(600.0, 900.0, "model")
            if q.step == "report"
            else TaskEstimate(3600.0, 4000.0, "model")
        )

    plan = plan_with(two_independent_steps(), estimate)
    fetch, report = plan.steps
    assert report.tasks == 1
    assert report.makespan_s == pytest.approx(600.0)
    assert report.lower_bound_s == pytest.approx(600.0)
    assert report.start_s == pytest.approx(6 * 3600.0)
    assert report.end_s == pytest.approx(6 * 3600.0 + 600.0)
    assert report.bound_s == pytest.approx(900.0)  # its task's bound, not 6 h 40 of queue
    assert fetch.makespan_s == pytest.approx(6 * 3600.0)
    assert fetch.start_s == 0.0 and fetch.end_s == pytest.approx(6 * 3600.0)
    assert plan.run.predicted_s == pytest.approx(6 * 3600.0 + 600.0)
    doc = plan_to_json(plan)["steps"][1]
    assert (doc["makespan_s"], doc["start_s"], doc["end_s"]) == (600.0, 21600.0, 22200.0)


def test_every_step_span_holds_its_lower_bound_and_fits_the_run() -> None:
    import random

    rng = random.Random(3)
    pipeline = make_pipeline(
        30,
        schedule={"cadence": "24h", "policy": "predicted"},
        concurrency={"max": 4},
        steps=[
            {"id": "a", "command": ["a"], "per_account": True},
            {"id": "b", "command": ["b"]},
            {"id": "c", "command": ["c"], "per_account": True, "depends_on": ["a"]},
            {"id": "d", "command": ["d"], "depends_on": ["b", "c"]},
        ],
    )
    plan = plan_with(pipeline, lambda q: TaskEstimate(*[rng.uniform(10, 600)] * 2, "model"))
    for step in plan.steps:
        mine = [t.predicted_s for t in plan.tasks if t.step == step.step]
        assert step.makespan_s == pytest.approx(step.end_s - step.start_s)
        assert step.makespan_s >= step.lower_bound_s - 1e-9
        assert step.lower_bound_s >= max(mine) - 1e-9
        assert step.start_s >= 0.0 and step.end_s <= plan.run.predicted_s + 1e-9
    by_id = {s.step: s for s in plan.steps}
    assert by_id["c"].start_s >= by_id["a"].end_s - 1e-9  # c waits for a
    assert by_id["d"].start_s >= max(by_id["b"].end_s, by_id["c"].end_s) - 1e-9
