"""What a run tells its observers, as typed events, and how a run ended (:class:`RunResult`).

Observers (progress displays, a monitor) implement :class:`RunObserver`: one method,
``on_event``, called from the runner's thread in this order:

- :class:`RunStarted` once, after the run was created and before any task starts;
- per attempt, :class:`TaskStarted`, then exactly one of :class:`TaskRetrying` (it failed
  and will be tried again) or :class:`TaskFinished` (its task's final attempt);
- :class:`TaskSkipped` for a task whose dependency failed for good (it never starts);
- at a stop, :class:`RunStopping` (and again with ``forced`` at a second signal), and one
  :class:`TasksCancelled` for every task that had not started (or waited for a retry);
- :class:`RunFinished` once, at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from planner.execution.control import StopReason
from planner.status import AttemptStatus, RunStatus

if TYPE_CHECKING:
    from planner.execution.guards import Takeover
    from planner.execution.tasks import TaskKey

__all__ = [
    "RunEvent",
    "RunFinished",
    "RunObserver",
    "RunResult",
    "RunStarted",
    "RunStopping",
    "TaskFinished",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TasksCancelled",
]


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its id, status, and final task counts by status."""

    run_id: str
    status: RunStatus
    counts: dict[str, int]
    concurrency: int
    takeover: Takeover | None = None
    #: The lease was taken by another run (this one then stopped as on a signal).
    lease_lost: bool = False
    #: A stop was requested (SIGINT/SIGTERM, or ``request_stop``).
    stopped_by_signal: bool = False
    #: Tasks recorded ``cancelled`` at the stop without having started (or while they
    #: waited for a retry).
    cancelled_not_started: int = 0

    @property
    def exit_code(self) -> int:
        """0 when every task succeeded, else 1."""
        return 0 if self.status == RunStatus.SUCCEEDED else 1


@dataclass(frozen=True)
class RunStarted:
    """The run exists: its id, the tasks to run per step id, and its concurrency."""

    run_id: str
    totals: Mapping[str, int]
    concurrency: int


@dataclass(frozen=True)
class TaskStarted:
    """An attempt started (``attempt`` is 1 for the first)."""

    key: TaskKey
    attempt: int


@dataclass(frozen=True)
class TaskRetrying:
    """An attempt failed (``failed`` or ``timed_out``) and the task runs again after
    ``delay_s``, as attempt ``attempt + 1``."""

    key: TaskKey
    attempt: int
    status: AttemptStatus
    duration_s: float
    exit_code: int | None
    error_class: str
    delay_s: float


@dataclass(frozen=True)
class TaskFinished:
    """A task's final attempt ended: ``succeeded``, ``failed``, ``timed_out`` or
    ``cancelled`` (killed at a stop). ``error_class`` is set for a failure."""

    key: TaskKey
    attempt: int
    status: AttemptStatus
    duration_s: float
    exit_code: int | None
    error_class: str | None


@dataclass(frozen=True)
class TaskSkipped:
    """A task will not run because a task it depends on failed for good."""

    key: TaskKey
    reason: str


@dataclass(frozen=True)
class TasksCancelled:
    """At a stop: every task that had not started (or waited for a retry), at once."""

    keys: tuple[TaskKey, ...]


@dataclass(frozen=True)
class RunStopping:
    """The run stops: ``running`` tasks get ``grace_s`` seconds before they are killed
    (0 when ``reason`` is ``forced``: killed now)."""

    reason: StopReason
    grace_s: float
    running: int


@dataclass(frozen=True)
class RunFinished:
    """The run ended (also after a stop)."""

    result: RunResult


RunEvent = (
    RunStarted
    | TaskStarted
    | TaskRetrying
    | TaskFinished
    | TaskSkipped
    | TasksCancelled
    | RunStopping
    | RunFinished
)


class RunObserver(Protocol):
    """Receives a run's events, in the runner's thread (keep it quick)."""

    def on_event(self, event: RunEvent) -> None: ...
