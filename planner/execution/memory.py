"""A step's ``memory_limit``: tasks whose whole process tree holds more are stopped.

The run loop registers each task of a limited step with a :class:`MemoryWatch` and calls
:meth:`MemoryWatch.check` on every wake-up (at least every 0.2 s). The check reads the
tree's RSS from the executor (:meth:`~planner.execution.executor.Executor.memory_in_use`,
the figure of its last sample: nothing is measured here), so any executor that reports it
gets the same limit. A task over its limit is killed like a timeout (TERM, the kill grace,
KILL, the whole tree); the loop then records the attempt ``failed`` with error class
``memory`` and the reason ``memory limit 512MiB exceeded (peak 730MiB)``.

How far a task gets past its limit depends on how fast it grows: the tree is read every
sample interval (0.25 s by default; 0.05 s for its root in its first 2 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planner.execution.executor import Executor, TaskHandle
    from planner.execution.tasks import TaskKey

__all__ = ["MemoryExceeded", "MemoryWatch", "format_memory"]

_MIB = 1024 * 1024


def format_memory(num_bytes: float) -> str:
    """Bytes as an operator reads them: ``488MiB``, ``730MiB``, ``1.5GiB``, ``2GiB``."""
    if num_bytes < 1024 * _MIB:
        return f"{num_bytes / _MIB:.0f}MiB"
    text = f"{num_bytes / (1024 * _MIB):.1f}".rstrip("0").rstrip(".")
    return f"{text}GiB"


@dataclass(frozen=True)
class MemoryExceeded:
    """A task was stopped for holding ``seen_bytes`` over its ``limit_bytes``."""

    limit_bytes: int
    seen_bytes: int

    def reason(self, peak_rss_mb: float | None) -> str:
        """``memory limit 512MiB exceeded (peak 730MiB)``: the peak is the larger of the
        attempt's recorded peak and what was seen when it was stopped."""
        peak = max(self.seen_bytes, int((peak_rss_mb or 0.0) * _MIB))
        limit = format_memory(self.limit_bytes)
        return f"memory limit {limit} exceeded (peak {format_memory(peak)})"


class MemoryWatch:
    """The running tasks that have a memory limit, checked on the executor's figures."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._watched: dict[TaskKey, tuple[TaskHandle, int]] = {}
        self._exceeded: dict[TaskKey, MemoryExceeded] = {}

    def watch(self, key: TaskKey, handle: TaskHandle, limit_bytes: int) -> None:
        """Task ``key`` started (as ``handle``) under a limit of ``limit_bytes``."""
        self._watched[key] = (handle, limit_bytes)

    def check(self, kill_grace: float) -> None:
        """Ask the executor to kill (TERM, ``kill_grace``, KILL) every watched task whose
        tree holds more than its limit; remembers why, for :meth:`ended`."""
        if not self._watched:
            return
        over = []
        for key, (handle, limit) in self._watched.items():
            in_use = self.executor.memory_in_use(handle)
            if in_use is not None and in_use > limit:
                over.append((key, handle, MemoryExceeded(limit, in_use)))
        for key, handle, exceeded in over:
            del self._watched[key]
            self._exceeded[key] = exceeded
            self.executor.request_kill(handle, kill_grace)

    def ended(self, key: TaskKey) -> MemoryExceeded | None:
        """Task ``key`` exited: forget it; what it exceeded, if it was stopped for that."""
        self._watched.pop(key, None)
        return self._exceeded.pop(key, None)
