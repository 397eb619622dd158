"""What a run tells its observers, as typed events, and how a run ended (:class:`RunResult`).

Observers (progress displays, a monitor) implement :class:`RunObserver`: one method,
``on_event``, called from the runner's thread in this order:

- :class:`RunStarted` once, after the run was created and before any task starts;
- per attempt, :class:`TaskStarted`, then exactly one of :class:`TaskRetrying` (it failed
  and will be tried again) or :class:`TaskFinished` (its task's final attempt);
- :class:`TaskSkipped` for a task whose dependency failed for good (it never starts);
- at a stop, :class:`RunStopping` (and again with ``forced`` at a second signal), and one
  :class:`TasksCancelled` for every task that had not started (or waited for a retry);
- with ``memory_pressure``: :class:`PressurePaused` when starts pause, then
  :class:`PressureResumed` when they go on (none when the run ends while paused);
  :class:`PressureForcedStart` before a task started anyway after ``max_pause``;
  :class:`PressureCleanup` when an episode's cleanup command ended;
- with an adaptive limit (``concurrency: {max: adaptive}``): :class:`LimitChanged` for
  every change of the limit (the start limit is :class:`RunStarted`'s ``concurrency``);
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
    from planner.execution.pressure import CleanupRecord, PressurePause
    from planner.execution.tasks import TaskKey

__all__ = [
    "LimitChanged",
    "PressureCleanup",
    "PressureForcedStart",
    "PressurePaused",
    "PressureResumed",
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
    #: The memory-pressure pauses of the run, oldest first (``memory_pressure``).
    pauses: tuple[PressurePause, ...] = ()

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
    ``delay_s``, as attempt ``attempt + 1``. ``memory_limit``: the bytes its tree
    exceeded when it was stopped for that (error class ``memory``)."""

    key: TaskKey
    attempt: int
    status: AttemptStatus
    duration_s: float
    exit_code: int | None
    error_class: str
    delay_s: float
    memory_limit: int | None = None


@dataclass(frozen=True)
class TaskFinished:
    """A task's final attempt ended: ``succeeded``, ``failed``, ``timed_out`` or
    ``cancelled`` (killed at a stop). ``error_class`` is set for a failure;
    ``memory_limit`` (bytes) when it was stopped over its step's memory limit."""

    key: TaskKey
    attempt: int
    status: AttemptStatus
    duration_s: float
    exit_code: int | None
    error_class: str | None
    memory_limit: int | None = None


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
class PressurePaused:
    """The system's memory in use (``memory``, a fraction) rose above ``threshold``: no
    new task starts until it falls below again; ``running`` tasks go on, ``waiting`` are
    held back. ``cleanup``: the episode's cleanup command, started now."""

    memory: float
    threshold: float
    waiting: int
    running: int
    cleanup: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PressureResumed:
    """Memory in use fell below the threshold after ``paused_s``: tasks start again
    (``peak``: the highest reading of the pause)."""

    memory: float
    threshold: float
    paused_s: float
    peak: float


@dataclass(frozen=True)
class LimitChanged:
    """The adaptive limit went from ``old`` to ``new`` tasks at once, for ``reason``."""

    old: int
    new: int
    reason: str


@dataclass(frozen=True)
class PressureForcedStart:
    """A pause had no task running for ``idle_s`` (at least ``max_pause``) while memory
    stayed above the threshold: one task starts anyway, so a run never waits forever."""

    memory: float
    threshold: float
    idle_s: float


@dataclass(frozen=True)
class PressureCleanup:
    """A pressure episode's cleanup command ended (its exit code and duration)."""

    cleanup: CleanupRecord


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
    | PressurePaused
    | PressureResumed
    | PressureForcedStart
    | PressureCleanup
    | LimitChanged
    | RunFinished
)


class RunObserver(Protocol):
    """Receives a run's events, in the runner's thread (keep it quick)."""

    def on_event(self, event: RunEvent) -> None: ...
