"""Pure planning: makespan and grouping, run estimate, intervals, concurrency,
recommendations and policy simulation. Data and ``now`` in, decisions out."""

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
]
