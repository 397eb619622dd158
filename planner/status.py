"""The statuses of runs and of task attempts, and the kinds of the daemon's decisions: one
vocabulary for runner, daemon, store and observers.

Both are :class:`~enum.StrEnum`: a member *is* the string the history stores
(``AttemptStatus.TIMED_OUT == "timed_out"``), so members go into rows, JSON and
comparisons with stored values unchanged. A task's status is the status of its last
attempt.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["NEXT_START_KINDS", "AttemptStatus", "DecisionKind", "RunStatus"]


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


class DecisionKind(StrEnum):
    """What the daemon decided (the ``kind`` of a stored decision)."""

    SCHEDULED = "scheduled"  # the next start, after a run (or the first)
    STARTED = "started"
    FINISHED = "finished"
    DEFERRED = "deferred"  # a start came due while another run held the pipeline
    REFUSED = "refused"  # a start did not run (bad file, crash): tried again later
    RETRAINED = "retrained"
    LEADER = "leader"  # this daemon now leads the pipeline


#: The decisions that set a next start: the newest of these says when and why.
NEXT_START_KINDS = (DecisionKind.SCHEDULED, DecisionKind.DEFERRED, DecisionKind.REFUSED)
