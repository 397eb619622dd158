"""Pure planning: makespan and grouping, run estimate, intervals, concurrency,
recommendations and policy simulation. Data and ``now`` in, decisions out.

The simulation (:mod:`planner.planning.simulate`) uses numpy: import it directly.
"""

from planner.planning.interval import decide_interval
from planner.planning.model import (
    IntervalDecision,
    PastRun,
    Plan,
    Recommendation,
    RunEstimate,
    StepPlan,
    TaskEstimate,
    TaskPlan,
    TaskQuery,
    WhatIf,
)
from planner.planning.plan import build_plan, plan_to_json, provisional_concurrency, task_queries

__all__ = [
    "IntervalDecision",
    "PastRun",
    "Plan",
    "Recommendation",
    "RunEstimate",
    "StepPlan",
    "TaskEstimate",
    "TaskPlan",
    "TaskQuery",
    "WhatIf",
    "build_plan",
    "decide_interval",
    "plan_to_json",
    "provisional_concurrency",
    "task_queries",
]
