"""The statuses of runs and of task attempts: one vocabulary for runner, store and observers.

Both are :class:`~enum.StrEnum`: a member *is* the string the history stores
(``AttemptStatus.TIMED_OUT == "timed_out"``), so members go into rows, JSON and
comparisons with stored values unchanged. A task's status is the status of its last
attempt.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AttemptStatus", "RunStatus"]


class AttemptStatus(StrEnum):
    """The state of one task attempt (``unknown`` only comes from imports)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"


class RunStatus(StrEnum):
    """The state of a run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
