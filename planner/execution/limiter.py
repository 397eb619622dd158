"""The run loop's concurrency limit: fixed, or adaptive (:mod:`planner.execution.adaptive`).

:class:`RunLimit` keeps what the controller needs from the loop: how many tasks ran at
each moment (an integral over the run's monotonic time, so each task's mean company is
exact), each finished task against its prediction, and the machine's load, read at most
every :data:`TICK_S` seconds. A fixed limit never changes and reads nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from planner import defaults
from planner.execution.adaptive import AdaptiveLimit, LimitChange
from planner.execution.control import LoopSettings
from planner.execution.load import LoadProbe, SystemLoadProbe
from planner.execution.tasks import TaskKey

__all__ = ["TICK_S", "RunLimit"]

#: How often an adaptive limit looks at the run and the machine (seconds).
TICK_S = 0.5


class RunLimit:
    """How many tasks may run at once now (:attr:`value`), and, when adaptive, the
    measurements that move it; ``on_change`` gets every change (in the loop's thread)."""

    def __init__(
        self,
        settings: LoopSettings,
        *,
        now: float,
        on_change: Callable[[LimitChange], None],
        probe: LoadProbe | None = None,
    ) -> None:
        self.value = settings.limit
        self._on_change = on_change
        self._predicted = settings.predicted
        self._controller: AdaptiveLimit | None = None
        self._probe: LoadProbe | None = None
        if settings.adaptive is not None:
            pressure = settings.memory_pressure
            threshold = pressure.threshold if pressure else defaults.PRESSURE_THRESHOLD
            self._controller = AdaptiveLimit(settings.adaptive, memory_threshold=threshold, now=now)
            self.value = self._controller.limit
            self._probe = probe or SystemLoadProbe()
        self._area = 0.0  # integral of tasks running over monotonic time
        self._t = now
        self._running = 0
        self._next_tick = -math.inf

    @property
    def adaptive(self) -> bool:
        return self._controller is not None

    @property
    def most(self) -> int:
        """The most the limit can ever be (the threads the loop needs)."""
        controller = self._controller
        return controller.bounds.ceiling if controller is not None else self.value

    def busy(self, now: float, running: int) -> float:
        """``running`` tasks run from ``now`` on; returns the integral up to ``now``."""
        now = max(now, self._t)
        self._area += self._running * (now - self._t)
        self._t, self._running = now, running
        return self._area

    def finished(
        self,
        key: TaskKey,
        *,
        started: float,
        mark: float,
        ended: float,
        ran_whole: bool,
        peak_rss_mb: float | None,
        cpu_s: float | None = None,
    ) -> None:
        """A task that started at ``started`` (integral ``mark`` then) ended at ``ended``;
        call before it leaves the running tasks. ``ran_whole``: it ended on its own and
        succeeded (only such a task tells how long tasks take now)."""
        controller = self._controller
        if controller is None:
            return
        if not ran_whole:
            controller.memory_seen(peak_rss_mb)
            return
        duration = ended - started
        mean = (self.busy(ended, self._running) - mark) / duration if duration > 0 else 1.0
        controller.task_finished(
            started=started,
            duration_s=duration,
            predicted_s=self._predicted.get(key),
            mean_running=mean,
            peak_rss_mb=peak_rss_mb,
            cpu_s=cpu_s,
        )

    def tick(self, now: float, *, running: int, waiting: int) -> None:
        """Look at the run and the machine (at most every :data:`TICK_S`)."""
        controller, probe = self._controller, self._probe
        if controller is None or probe is None or now < self._next_tick:
            return
        self._next_tick = now + TICK_S
        change = controller.update(now, running=running, waiting=waiting, load=probe.read())
        if change is not None and change.new != change.old:
            self.value = change.new
            self._on_change(change)
