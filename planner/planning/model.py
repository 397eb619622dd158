"""The values planning works on: task queries and estimates in, a plan out.

:class:`TaskQuery` and :class:`TaskEstimate` are the contract with the predictor
(``planner.learning.predictor``): it turns queries into estimates, planning turns
estimates into a :class:`Plan`. Everything here is a frozen dataclass with no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from planner.planning.contention import StepContention

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


@dataclass(frozen=True)
class TaskQuery:
    """One task to estimate: a step, for one account (or none), with its inputs."""

    step: str
    account: str | None
    quantity: float
    params: Mapping[str, str | int | float | bool]
    n_accounts: int
    concurrency: int


#: ``TaskEstimate.source`` of a task with no history: the default estimate.
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class TaskEstimate:
    """The predicted duration of one task and its upper bound (``bound_s >= predicted_s``).

    ``source`` says where it came from: ``"model"``, a baseline such as
    ``"last2:step,account"``, or ``"default"``. ``peak_rss_mb``: the task's likely peak
    memory; ``cpu_share``: the cores it keeps busy (CPU seconds per wall second, 0.05 for
    a task that mostly waits, 1.0 for one that computes on one core); ``None``: unknown.
    """

    predicted_s: float
    bound_s: float
    source: str
    peak_rss_mb: float | None = None
    cpu_share: float | None = None


@dataclass(frozen=True)
class PastRun:
    """A finished run of the pipeline and, when one was stored, the plan made for it."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    predicted_s: float | None = None
    bound_s: float | None = None

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class TaskPlan:
    """A task in the plan: its estimate and the worker slot it goes to."""

    step: str
    account: str | None
    predicted_s: float
    bound_s: float
    source: str
    slot: int
    peak_rss_mb: float | None = None


@dataclass(frozen=True)
class StepPlan:
    """One step in the run's schedule at the chosen concurrency (shared slots).

    ``slots``: the run's concurrency (the slots the step's tasks may take);
    ``makespan_s``: the step's own span, from its first task's start to its last task's
    end (a one-task step: that task's prediction); ``lower_bound_s``: what no schedule of
    the step's tasks on ``slots`` slots can beat, ``max(longest, total / slots)``;
    ``bound_s``: the same span in the schedule of the task bounds; ``start_s`` /
    ``end_s``: when its first task starts and its last task ends, from the run's start;
    ``groups``: the accounts of each slot it uses, in the order they start there.
    """

    step: str
    tasks: int
    slots: int
    makespan_s: float
    lower_bound_s: float
    bound_s: float
    groups: tuple[tuple[str | None, ...], ...] = ()
    start_s: float = 0.0
    end_s: float = 0.0


@dataclass(frozen=True)
class WhatIf:
    """Predicted run duration at another concurrency, and the memory it needs."""

    concurrency: int
    makespan_s: float
    memory_mb: float | None
    fits_cpu: bool = True
    fits_memory: bool = True
    #: The same run without the slowdown of contention (every task as predicted at the
    #: concurrency it was asked for); ``None`` when no step has a contention curve.
    flat_makespan_s: float | None = None


@dataclass(frozen=True)
class Recommendation:
    """One piece of advice in plain words, with the numbers behind it."""

    text: str
    kind: str
    numbers: Mapping[str, float | int | str | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, **dict(self.numbers)}


@dataclass(frozen=True)
class RunEstimate:
    """The whole run: predicted along the critical path, and its calibrated upper bound."""

    predicted_s: float
    bound_s: float
    critical_path: tuple[str, ...]
    bound_rule: str
    calibration_runs: int = 0
    factor: float = 1.0


@dataclass(frozen=True)
class IntervalDecision:
    """When the next run starts and why."""

    policy: str
    interval_s: float | None
    next_start: datetime | None
    reason: str
    fits_cadence: bool = True
    cadence_s: float | None = None


@dataclass(frozen=True)
class Plan:
    """The plan of one run of a pipeline."""

    pipeline: str
    created_at: datetime
    concurrency: int
    concurrency_rule: str
    run: RunEstimate
    steps: tuple[StepPlan, ...]
    tasks: tuple[TaskPlan, ...]
    interval: IntervalDecision
    what_if: tuple[WhatIf, ...]
    recommendations: tuple[Recommendation, ...]
    warnings: tuple[str, ...] = ()
    memory_per_task_mb: float | None = None
    free_memory_mb: float | None = None
    #: The cores one task keeps busy, for the run as a whole (the tasks' CPU shares
    #: weighted by their predicted seconds); ``None``: not measured, one core per task.
    cpu_per_task: float | None = None
    #: The most tasks that can run at once (more slots than this are never used).
    widest: int | None = None
    #: Per step of the plan, how its tasks slow down with concurrency and the evidence
    #: (:class:`~planner.planning.contention.StepContention`; ``usl`` None: too little).
    contention: Mapping[str, StepContention] = field(default_factory=dict)
    #: One line per step with history but too little evidence of how it scales.
    contention_notes: tuple[str, ...] = ()
    #: Where ``concurrency: {max: adaptive}`` starts: the ``auto`` answer on this machine
    #: (CPU, memory, the widest part of the run, and the dominant step's knee).
    adaptive_start: int | None = None
    #: Past this count no step of the run gains (the largest of the steps' throughput
    #: peaks); ``None`` when a step has no curve or no peak: no hint, keep the ceiling.
    adaptive_ceiling: int | None = None
    #: ``(min, ceiling)`` of ``concurrency: {max: adaptive}`` on this machine (the ceiling
    #: within the memory fit); ``None`` when the pipeline's limit does not adapt.
    adaptive_range: tuple[int, int] | None = None
