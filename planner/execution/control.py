"""What the run loop shares with the outside: stop requests, the lease, and its settings.

:class:`RunControl` is written by the signal handlers, the lease keeper's thread (or a
daemon stopping a run) and read by the loop; writing only sets flags, so it is safe from
a signal handler. :class:`LoopSettings` is the loop's configuration as one frozen value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planner.config.models import MemoryPressure, RetryPolicy
    from planner.execution.adaptive import AdaptiveBounds
    from planner.execution.tasks import TaskKey

__all__ = ["LoopSettings", "RunControl", "StopReason"]


class StopReason(StrEnum):
    """Why a run stops before its end."""

    #: SIGINT/SIGTERM (or :meth:`RunControl.request_stop`): no new task starts, running
    #: ones get ``stop_grace`` seconds, then are killed.
    SIGNAL = "signal"
    #: The lease was taken by another run: stop as on a signal.
    LEASE_LOST = "lease_lost"
    #: A second stop request: running tasks are killed at once.
    FORCED = "forced"


class RunControl:
    """Stop requests and the state of the lease of one run.

    ``request_stop`` and ``lose_lease`` only set flags (signal-safe, any thread); the
    loop looks at them on each wake-up (at least every 0.2 s).
    """

    def __init__(self) -> None:
        #: How many times a stop was requested (the first stops, the second kills).
        self.stop_requests = 0
        #: The lease was lost to another run.
        self.lease_lost = False

    def request_stop(self) -> None:
        """First call: start nothing more, kill running tasks after the grace. Second: now."""
        self.stop_requests += 1

    def lose_lease(self) -> None:
        """The lease keeper's callback: the lease is no longer ours."""
        self.lease_lost = True

    @property
    def stopping(self) -> bool:
        """Whether the run must stop (a stop was requested or the lease was lost)."""
        return self.stop_requests > 0 or self.lease_lost

    @property
    def forced(self) -> bool:
        """Whether running tasks must be killed at once (a second stop request)."""
        return self.stop_requests >= 2

    @property
    def reason(self) -> StopReason | None:
        """Why the run stops (``None`` while it need not)."""
        if self.forced:
            return StopReason.FORCED
        if self.stop_requests:
            return StopReason.SIGNAL
        return StopReason.LEASE_LOST if self.lease_lost else None


@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs: at most ``limit`` tasks at once, the stop and kill graces, the
    timeouts of tasks of ``timeout: auto`` steps (a task missing here has none), the
    retry policy of each step (by step id; a step missing here is not retried), the
    pipeline's ``memory_pressure`` (``None``: starts never pause for memory), and with an
    adaptive limit its bounds (``adaptive``; ``limit`` is then where it starts) and each
    task's predicted seconds (``predicted``: what the limit compares durations with)."""

    limit: int
    stop_grace: float = 10.0
    kill_grace: float = 5.0
    timeouts: Mapping[TaskKey, float] = field(default_factory=dict)
    retry_policies: Mapping[str, RetryPolicy | None] = field(default_factory=dict)
    memory_pressure: MemoryPressure | None = None
    adaptive: AdaptiveBounds | None = None
    predicted: Mapping[TaskKey, float] = field(default_factory=dict)
