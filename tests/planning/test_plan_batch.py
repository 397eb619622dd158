"""build_plan on large, shuffled task lists: each task keeps its own estimate and slot."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from planner.config import Pipeline, parse_pipeline, select_steps
from planner.planning import plan as plan_module
from planner.planning.makespan import schedule_graph
from planner.planning.model import TaskEstimate, TaskPlan
from planner.planning.plan import build_plan, plan_to_json, task_queries

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def _pipeline(n_steps: int = 6, n_accounts: int = 40) -> Pipeline:
    raw: dict[str, Any] = {
        "name": "wide",
        "accounts": [f"acct-{i:03d}" for i in range(n_accounts)],
        "schedule": {"cadence": "24h", "policy": "predicted"},
        "concurrency": {"max": 5},
        "steps": [
            {
                "id": f"s{i}",
                "command": ["true"],
                "per_account": i != 3,
                "depends_on": [f"s{i - 1}"] if i % 3 else [],
                "params": {"mode": i},
            }
            for i in range(n_steps)
        ],
    }
    pipeline, issues = parse_pipeline(raw, base_dir=Path("."))
    assert not issues and pipeline is not None
    return pipeline


def test_task_queries_share_one_params_mapping_per_step() -> None:
    pipeline = _pipeline()
    queries = task_queries(pipeline, select_steps(pipeline), concurrency=5)
    by_step: dict[str, set[int]] = {}
    for q in queries:
        by_step.setdefault(q.step, set()).add(id(q.params))
        assert dict(q.params) == {"mode": int(q.step[1:])}
    assert all(len(ids) == 1 for ids in by_step.values())
    assert len({next(iter(ids)) for ids in by_step.values()}) == len(by_step)


def test_shuffled_queries_keep_their_estimates_order_and_slots() -> None:
    pipeline = _pipeline()
    steps = select_steps(pipeline)
    rng = random.Random(5)
    pairs = [
        (q, TaskEstimate(d, d * 1.5, rng.choice(["model", "last2:step"]), rng.choice([None, 9.0])))
        for q in task_queries(pipeline, steps, concurrency=5)
        for d in [float(rng.randint(1, 20))]  # many ties
    ]
    rng.shuffle(pairs)
    queries, estimates = [p[0] for p in pairs], [p[1] for p in pairs]
    plan = build_plan(
        pipeline,
        steps,
        queries,
        estimates,
        past_runs=[],
        now=NOW,
        cpu_count=8,
        free_memory_mb=4000.0,
    )
    # tasks: steps in pipeline order, each step's tasks in the order given
    want = [
        (q.step, q.account, e.predicted_s, max(e.bound_s, e.predicted_s), e.source, e.peak_rss_mb)
        for s in steps
        for q, e in pairs
        if q.step == s.id
    ]
    got = [
        (t.step, t.account, t.predicted_s, t.bound_s, t.source, t.peak_rss_mb) for t in plan.tasks
    ]
    assert got == want
    # slots and groups: those of the shared-slot schedule of the predictions in that order
    deps = {s.id: [d for d in s.depends_on] for s in steps}
    predicted: dict[str, list[float]] = {s.id: [] for s in steps}
    accounts: dict[str, list[str | None]] = {s.id: [] for s in steps}
    for q, e in pairs:
        predicted[q.step].append(e.predicted_s)
        accounts[q.step].append(q.account)
    sched = schedule_graph(deps, predicted, plan.concurrency)
    assert [t.slot for t in plan.tasks] == [k for s in steps for k in sched.slot[s.id]]
    for step_plan in plan.steps:
        s = step_plan.step
        slots = sorted(set(sched.slot[s]))
        expected = tuple(
            tuple(
                accounts[s][k]
                for k in sorted(range(len(accounts[s])), key=lambda k: sched.start[s][k])
                if sched.slot[s][k] == g
            )
            for g in slots
        )
        assert step_plan.groups == expected
    rows = plan_to_json(plan)["tasks"]
    assert [(r["step"], r["account"], r["slot"]) for r in rows] == [
        (t.step, t.account, t.slot) for t in plan.tasks
    ]
    assert rows[0]["predicted_s"] == round(plan.tasks[0].predicted_s, 3)


def test_fast_task_plans_equal_constructed_ones() -> None:
    assert plan_module._FAST_TASKS
    built = plan_module._task_plans(
        "s", [("a", 1.0, 2.0, "model", 3, None), (None, 0.5, 0.5, "x", 0, 7.0)]
    )
    want = [
        TaskPlan("s", "a", 1.0, 2.0, "model", 3, None),
        TaskPlan("s", None, 0.5, 0.5, "x", 0, 7.0),
    ]
    assert built == want
    assert [hash(t) for t in built] == [hash(t) for t in want]
    assert [dataclasses.asdict(t) for t in built] == [dataclasses.asdict(t) for t in want]
