"""build_plan end to end (pure), and the recommendations it carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from planner.config import Pipeline, parse_pipeline, select_steps
from planner.planning.model import TaskEstimate
from planner.planning.plan import build_plan, plan_to_json, task_queries

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
H = 3600.0
GIB = 1024.0


def make_pipeline(**overrides: Any) -> Pipeline:
    raw: dict[str, Any] = {
        "name": "nightly",
        "accounts": [f"acct-{i:02d}" for i in range(12)],
        "schedule": {"cadence": "24h", "policy": "predicted", "min_margin": 0.1},
        "concurrency": {"max": 2},
        "steps": [
            {"id": "1", "command": ["collect"], "per_account": True, "quantity": 500},
            {"id": "2", "command": ["aggregate"], "depends_on": ["1"]},
        ],
    }
    raw.update(overrides)
    pipeline, issues = parse_pipeline(raw, base_dir=Path("."))
    assert not issues and pipeline is not None
    return pipeline


def plan_for(pipeline: Pipeline, per_task_s: float, aggregate_s: float = 0.0, **kwargs: Any) -> Any:
    steps = select_steps(pipeline)
    queries = task_queries(pipeline, steps, concurrency=2)
    estimates = [
        TaskEstimate(per_task_s, per_task_s * 1.066, "model", 1.7 * GIB)
        if q.account
        else TaskEstimate(aggregate_s, aggregate_s, "model", None)
        for q in queries
    ]
    defaults: dict[str, Any] = {"cpu_count": 8, "free_memory_mb": 22 * GIB}
    defaults.update(kwargs)
    return build_plan(pipeline, steps, queries, estimates, past_runs=[], now=NOW, **defaults)


def test_overrun_recommendation_has_its_numbers() -> None:
    plan = plan_for(make_pipeline(), 4.55 * H)
    assert plan.run.predicted_s == pytest.approx(27.3 * H)
    rec = plan.recommendations[0]
    assert rec.kind == "cadence"
    assert rec.text == (
        "step 1 is predicted 27.3h (bound 34.1h) against a 24.0h cadence: concurrency 3 "
        "brings it to 18.2h within memory (5.1 of 22.0 GiB), or set the cadence to 38h"
    )
    assert rec.numbers["concurrency"] == 3
    assert rec.numbers["suggested_cadence_s"] == 38 * H
    assert not plan.interval.fits_cadence
    assert plan.interval.interval_s == pytest.approx(plan.run.bound_s * 1.1)


def test_cannot_fit_cadence_at_any_allowed_concurrency() -> None:
    pipeline = make_pipeline(accounts=["only"])
    plan = plan_for(pipeline, 30 * H)
    rec = plan.recommendations[0]
    assert "cannot fit its cadence at any allowed concurrency" in rec.text
    assert "set the cadence to" in rec.text


def test_idle_cadence_recommendation() -> None:
    plan = plan_for(make_pipeline(), 600.0)
    kinds = [r.kind for r in plan.recommendations]
    assert "idle" in kinds
    idle = plan.recommendations[kinds.index("idle")]
    assert idle.numbers["cadence_s"] == 24 * H


def test_fixed_concurrency_beyond_cpu_is_recommended_down() -> None:
    plan = plan_for(make_pipeline(), 600.0, cpu_count=2)
    texts = [r.text for r in plan.recommendations if r.kind == "concurrency"]
    assert any("exceeds the CPU fit" in t and "use 1" in t for t in texts)
    assert plan.warnings


def test_auto_concurrency_uses_memory_of_the_estimates() -> None:
    pipeline = make_pipeline(concurrency={"max": "auto"})
    plan = plan_for(pipeline, H, cpu_count=64, free_memory_mb=10 * GIB)
    assert plan.concurrency == 4  # 10 GiB x 0.8 / 1.7 GiB = 4.7
    assert plan.memory_per_task_mb == pytest.approx(1.7 * GIB)


def test_plan_json_shape_and_grouping() -> None:
    plan = plan_for(make_pipeline(), H, 60.0, concurrency=4)
    doc = plan_to_json(plan)
    assert set(doc) == {
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
        "warnings",
        "contention",
        "contention_warnings",
        "adaptive",
    }
    assert set(doc["run"]) == {"predicted_s", "bound_s", "critical_path"}
    assert doc["concurrency"] == 4
    assert doc["run"]["critical_path"] == ["1", "2"]
    assert {tuple(sorted(s)) for s in doc["steps"]} == {
        ("bound_s", "end_s", "lower_bound_s", "makespan_s", "start_s", "step", "tasks")
    }
    assert doc["concurrency_rule"] == "fixed at 4"
    assert doc["cpu_per_task"] is None  # the estimates carry no CPU share
    assert {tuple(sorted(t)) for t in doc["tasks"]} == {
        ("account", "bound_s", "predicted_s", "slot", "source", "step")
    }
    # 12 equal tasks on 4 slots: 3 per slot, makespan 3 h
    slots = [t["slot"] for t in doc["tasks"] if t["step"] == "1"]
    assert sorted(slots.count(s) for s in set(slots)) == [3, 3, 3, 3]
    assert doc["steps"][0]["makespan_s"] == 3 * H
    assert doc["next_start"] == (NOW + timedelta(hours=24)).isoformat()
    assert all("text" in r for r in doc["recommendations"])
    # the JSON carries each recommendation's kind and numbers, rounded
    assert [r["kind"] for r in doc["recommendations"]] == ["idle", "calibration"]
    assert doc["recommendations"][0]["suggested_cadence_s"] == 5 * H
    assert doc["recommendations"][1]["calibration_runs"] == 0
    assert doc["what_if"][0]["concurrency"] == 1


def test_longest_first_grouping_in_step_plan() -> None:
    pipeline = make_pipeline(accounts=["a", "b", "c", "d"])
    steps = select_steps(pipeline)
    queries = task_queries(pipeline, steps, concurrency=2)
    sizes = {"a": 1.0, "b": 5.0, "c": 3.0, "d": 2.0, None: 0.0}
    estimates = [TaskEstimate(sizes[q.account], sizes[q.account], "model") for q in queries]
    plan = build_plan(
        pipeline,
        steps,
        queries,
        estimates,
        past_runs=[],
        now=NOW,
        cpu_count=8,
        free_memory_mb=None,
    )
    # LPT: b(5) -> slot 0, c(3) -> slot 1, d(2) -> slot 1 (free at 3), a(1) -> slot 0
    assert plan.steps[0].groups == (("b", "a"), ("c", "d"))
    assert plan.steps[0].makespan_s == 6.0


def test_tasks_at_the_default_estimate_never_stretch_the_interval_past_the_cadence() -> None:
    pipeline = make_pipeline(schedule={"cadence": "1h", "policy": "predicted"})
    steps = select_steps(pipeline)
    queries = task_queries(pipeline, steps, concurrency=2)
    # step 1 has history (5 min a task: 30 min on 2 slots); step 2 is new: the default, 2 h
    known = [TaskEstimate(300.0, 350.0, "model") if q.account else None for q in queries]
    estimates = [e or TaskEstimate(2 * H, 2 * H, "default") for e in known]
    plan = build_plan(
        pipeline,
        steps,
        queries,
        estimates,
        past_runs=[],
        now=NOW,
        cpu_count=8,
        free_memory_mb=22 * GIB,
    )
    assert plan.run.bound_s > 2 * H  # the plan itself counts the default
    assert plan.interval.interval_s == H  # but the interval stays at the cadence
    assert "default estimate" in plan.interval.reason
    # tasks with history alone past the cadence still stretch it, by their own bound only
    longer = [TaskEstimate(2400.0, 2800.0, "model") if q.account else None for q in queries]
    estimates = [e or TaskEstimate(2 * H, 2 * H, "default") for e in longer]
    plan = build_plan(
        pipeline,
        steps,
        queries,
        estimates,
        past_runs=[],
        now=NOW,
        cpu_count=8,
        free_memory_mb=22 * GIB,
    )
    assert H < plan.interval.interval_s < plan.run.bound_s * 1.1


def test_a_fixed_start_missed_past_the_grace_is_skipped_to_the_next() -> None:
    from planner.config.models import Schedule
    from planner.planning.interval import decide_interval

    fixed = Schedule(cadence=H, policy="fixed")
    late = decide_interval(
        fixed, 60.0, NOW, NOW + timedelta(hours=3, minutes=10), misfire_grace_s=300
    )
    assert late.next_start == NOW + timedelta(hours=4)
    assert "skipped to the next" in late.reason
    within = decide_interval(
        fixed, 60.0, NOW, NOW + timedelta(hours=1, minutes=2), misfire_grace_s=300
    )
    assert within.next_start == NOW + timedelta(hours=1, minutes=2)  # due now
    cron = Schedule(cron="0 3 * * *", policy="fixed")
    skipped = decide_interval(
        cron, 60.0, NOW, NOW + timedelta(days=1, hours=2), misfire_grace_s=300
    )
    assert skipped.next_start == datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
