"""An adaptive concurrency limit: how many tasks run at once, learnt while the run goes.

``concurrency: {max: adaptive}`` starts at the plan's ``auto`` answer and moves the limit
from what the run measures, never above ``ceiling`` (already within the memory fit) and
never below ``min``. The controller is pure: the loop feeds it each finished task and, on
its wake-ups, the number of tasks running and waiting and a :class:`LoadReading`; it
answers with a :class:`LimitChange` (or nothing) and keeps no clock of its own.

What it measures. Each finished task gives its *stretch*, its duration over its predicted
duration (so tasks of different sizes compare), and the mean number of tasks running
during its life. At a level of concurrency ``n`` the run completes predicted work at
about ``X(n) = n / stretch(n)`` predicted seconds per wall second (each running task
advances ``1 / stretch`` of a predicted second per second). ``X`` is the quantity to
maximise; it is TCP Vegas' comparison of the expected and the actual rate, with
predicted seconds in place of bytes.

How it moves (hill climbing with a multiplicative start, as TCP's slow start and
Crawlee's ``AutoscaledPool``; the decrease as AIMD's):

- *growing*: once a level has its evidence (``ceil(n / 2)`` tasks, at least one, started
  and finished at that level, with the level really used), the limit grows x4
  (:data:`GROWTH`) while each step pays, that is while ``X`` rose by at least a third of
  what the added tasks could give (``X(4n) / X(n) - 1 >= 1/3 x (4 - 1)``). Tasks that keep
  a core busy (their CPU seconds per second, measured) grow only up to what the cores
  hold, and by one at a time when the CPU is saturated (at least 90 % busy, or a load
  above 1.5 per core); tasks that mostly wait are not held back by other programs' load.
  A step that does not pay is undone to the count that was really being served,
  ``n x base stretch / stretch(n)`` (Little's law: 16 tasks that each took twice as long
  kept about 8 in service), never below the last level that paid; then *steady*.
- *steady*: the level is watched on its latest tasks. Every probe period (three median
  task durations, at least 10 s, doubling after each probe that failed, up to 16 times)
  it tries a quarter more (at least one); a probe that pays is kept and growing resumes.
  When ``X`` falls below 70 % of what the level gave (a remote service slowed down, the
  machine got busy) the limit is cut to three quarters and measured again.
- *memory*: the pressure threshold (the pipeline's ``memory_pressure``, else the
  default) is a hard stop: at or above it the limit halves at once (and the loop's
  pressure gate holds starts); no step up is taken that, at the tasks' measured peak
  memory, would pass it.

On waiting-bound tasks (a remote service, a database, sleeps) the CPU stays idle, the
stretch stays at its base until the remote side saturates, so the limit grows x4 up to
that point, overshoots once, measures that the overshoot only stretched the tasks, and
settles on what was served. On CPU-bound tasks the stretch grows as soon as the tasks
outnumber the cores and their CPU share caps growth, so the limit stops near the cores.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "AdaptiveBounds",
    "AdaptiveLimit",
    "LimitChange",
    "LoadReading",
    "Phase",
]

#: A step pays when X rose by at least this share of what the added tasks could give.
PAY_SHARE = 1 / 3
#: Growth: at most this factor a step (less when the CPU would pass saturation).
GROWTH = 4
#: A task keeping at least this share of a core busy counts as using the CPU (a saturated
#: CPU then slows growth; tasks that mostly wait are not held back by others' load).
BUSY_TASK = 0.25
#: CPU busy share (of all cores) from which the CPU counts as saturated.
CPU_SATURATED = 0.9
#: Load average per core from which the CPU counts as saturated.
LOAD_SATURATED = 1.5
#: A level whose X fell below this share of what it gave is cut.
DEGRADED = 0.7
#: The cut: limit x this, down.
CUT = 0.75
#: Steady probes: every this many median task durations, at least PROBE_MIN_S.
PROBE_TASKS = 3.0
PROBE_MIN_S = 10.0
PROBE_BACKOFF_MAX = 16
#: Growth stays this far (a share of the memory) under the pressure threshold.
MEMORY_MARGIN = 0.02
#: A level counts as used when its tasks ran with at least this share of its slots busy.
USED_SHARE = 0.75
#: Tasks kept per level (the newest).
KEPT = 64


class Phase(StrEnum):
    GROWING = "growing"
    STEADY = "steady"


@dataclass(frozen=True)
class AdaptiveBounds:
    """Where an adaptive limit starts and the range it stays in (``min <= start <=
    ceiling``; ``ceiling`` already within the memory fit)."""

    start: int
    min: int
    ceiling: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.ceiling:
            raise ValueError(f"adaptive bounds: need 1 <= min <= ceiling, got {self}")
        if not self.min <= self.start <= self.ceiling:
            object.__setattr__(self, "start", min(max(self.start, self.min), self.ceiling))


@dataclass(frozen=True)
class LoadReading:
    """The machine as last read: CPU busy share of all cores since the previous reading,
    memory in use (a fraction of the total), total memory (MB), load average per core,
    the cores. ``None``: not known."""

    cpu_busy: float | None = None
    memory_used: float | None = None
    memory_total_mb: float | None = None
    load_per_core: float | None = None
    cores: int | None = None

    def cpu_saturated(self) -> bool:
        busy = self.cpu_busy is not None and self.cpu_busy >= CPU_SATURATED
        loaded = self.load_per_core is not None and self.load_per_core >= LOAD_SATURATED
        return busy or loaded


@dataclass(frozen=True)
class LimitChange:
    """The limit went from ``old`` to ``new`` at ``at_mono`` (the loop's monotonic
    seconds) for ``reason`` (one line), with the measurements behind it in ``detail``."""

    at_mono: float
    old: int
    new: int
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Level:
    """What the tasks started at one limit gave: (stretch, mean tasks running) each."""

    limit: int
    since: float
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=KEPT))

    def evidence(self) -> bool:
        return len(self.samples) >= max(1, math.ceil(self.limit / 2))

    def _latest(self) -> list[tuple[float, float]]:
        return list(self.samples)[-max(4, self.limit) :]

    def stretch(self) -> float:
        return statistics.median(s for s, _ in self._latest())

    def running(self) -> float:
        return statistics.median(r for _, r in self._latest())

    def used(self) -> bool:
        return self.running() >= USED_SHARE * self.limit

    def rate(self) -> float:
        """X: predicted seconds completed per wall second at this level."""
        return self.running() / max(self.stretch(), 1e-9)


class AdaptiveLimit:
    """The controller of one run's limit (see the module's docstring).

    ``memory_threshold``: the fraction of memory in use that is a hard stop."""

    def __init__(self, bounds: AdaptiveBounds, *, memory_threshold: float, now: float) -> None:
        self.bounds = bounds
        self.memory_threshold = memory_threshold
        self.limit = bounds.start
        self.phase = Phase.GROWING
        self._level = _Level(self.limit, now)
        #: The rate measured at each level (its newest measurement).
        self.rates: dict[int, float] = {}
        self._base: int | None = None  # the level a step up is compared with
        self._probe_from: int | None = None  # steady level a probe left
        self._probe_wait = 1.0
        self._steady_since = now
        self._base_stretch = math.inf  # the least stretch seen at any level
        self._durations: deque[float] = deque(maxlen=KEPT)
        self._peaks: deque[float] = deque(maxlen=KEPT)
        self._shares: deque[float] = deque(maxlen=KEPT)  # cores each task kept busy

    # -- what the loop tells it -------------------------------------------------------

    def task_finished(
        self,
        *,
        started: float,
        duration_s: float,
        predicted_s: float | None,
        mean_running: float,
        peak_rss_mb: float | None = None,
        cpu_s: float | None = None,
    ) -> None:
        """A task that succeeded, started at monotonic ``started``, ran ``duration_s``
        with ``mean_running`` tasks running on average; its tree's peak memory and CPU
        seconds."""
        self.memory_seen(peak_rss_mb)
        if duration_s <= 0:
            return
        self._durations.append(duration_s)
        if cpu_s is not None:
            self._shares.append(cpu_s / duration_s)
        if started < self._level.since:
            return  # it began under another limit
        predicted = predicted_s if predicted_s and predicted_s > 0 else 1.0
        self._level.samples.append((duration_s / predicted, mean_running))

    def memory_seen(self, peak_rss_mb: float | None) -> None:
        """The peak memory of a task's tree (any task that ran, however it ended)."""
        if peak_rss_mb is not None and peak_rss_mb > 0:
            self._peaks.append(peak_rss_mb)

    def update(
        self, now: float, *, running: int, waiting: int, load: LoadReading
    ) -> LimitChange | None:
        """The limit's next value, if it changes now."""
        memory = load.memory_used
        if memory is not None and memory >= self.memory_threshold:
            return self._memory_cut(now, memory)
        level = self._level
        if running > self.limit:
            level.since = now  # still draining a higher limit: measure from below it
            level.samples.clear()
        if self.phase is Phase.STEADY and self._probe_from is None:
            return self._steady(now, running, waiting, load)
        if not level.evidence():
            return None
        if not level.used():
            if waiting > 0 or running >= self.limit:
                level.samples.clear()  # it was not used for want of tasks: measure again
            return None
        rate = level.rate()
        self.rates[self.limit] = rate
        base = self._base
        stretch = level.stretch()
        self._base_stretch = min(self._base_stretch, stretch)
        if base is not None and not self._paid(base, rate):
            if self._probe_from is not None:
                self._probe_wait = min(self._probe_wait * 2, PROBE_BACKOFF_MAX)
            serving = self.limit * self._base_stretch / stretch
            best = max(base, min(self.limit - 1, round(serving)))
            reason = (
                f"{self.limit} at once did not pay: {rate:.3g} predicted s done per s against "
                f"{self.rates[base]:.3g} at {base}; tasks took {stretch / self._base_stretch:.2f}x"
                f" as long, so about {serving:.1f} were being served"
            )
            return self._settle(now, best, reason, rate)
        if base is not None:
            self._probe_wait = 1.0
        return self._grow(now, running, waiting, load, rate)

    # -- the moves ----------------------------------------------------------------------

    def _paid(self, base: int, rate: float) -> bool:
        before = self.rates.get(base)
        if before is None or before <= 0:
            return True
        ideal = self.limit / base - 1
        return rate / before - 1 >= PAY_SHARE * ideal

    def _grow(
        self, now: float, running: int, waiting: int, load: LoadReading, rate: float
    ) -> LimitChange | None:
        if waiting == 0:
            return None  # nothing waits for a slot: more would not be used now
        share = statistics.median(self._shares) if self._shares else None
        wanted, how = self.limit * GROWTH, f"x{GROWTH}"
        if load.cpu_saturated() and (share is None or share >= BUSY_TASK):
            wanted, how = self.limit + 1, "CPU saturated: one more"
        elif share is not None and load.cores and share > 0:
            fit = math.floor(load.cores * CPU_SATURATED / share)
            if fit < wanted:
                wanted = max(self.limit + 1, fit)
                how = f"tasks use {share:.2f} core each: up to what {load.cores} cores hold"
        target = min(wanted, self.bounds.ceiling, self._memory_room(running, load))
        if target <= self.limit:
            self.phase, self._probe_from = Phase.STEADY, None
            self._steady_since = now
            return None
        reason = (
            f"{self.limit} at once: {rate:.3g} predicted s done per s (tasks took "
            f"{self._level.stretch():.2f}x their prediction); {how}"
        )
        self._base = self.limit
        self.phase, self._probe_from = Phase.GROWING, None
        return self._move(now, target, reason, rate)

    def _settle(self, now: float, best: int, reason: str, rate: float) -> LimitChange | None:
        self.phase, self._probe_from = Phase.STEADY, None
        self._base = None
        self._steady_since = now
        if best == self.limit:
            return None
        return self._move(now, best, f"{reason}; back to {best}", rate)

    def _steady(
        self, now: float, running: int, waiting: int, load: LoadReading
    ) -> LimitChange | None:
        level = self._level
        if level.evidence() and level.used():
            rate = level.rate()
            known = self.rates.get(self.limit)
            if known is not None and rate < DEGRADED * known and self.limit > self.bounds.min:
                target = max(self.bounds.min, math.floor(self.limit * CUT))
                if target < self.limit:
                    reason = (
                        f"tasks slowed: {rate:.3g} predicted s done per s against {known:.3g}"
                        f" before at {self.limit}"
                    )
                    self.rates.clear()  # the conditions changed: measure anew
                    self._steady_since = now
                    return self._move(now, target, reason, rate)
            if known is None:
                self.rates[self.limit] = rate
        typical = statistics.median(self._durations) if self._durations else PROBE_MIN_S
        period = max(PROBE_TASKS * typical, PROBE_MIN_S) * self._probe_wait
        if now - self._steady_since < period or waiting == 0 or self.limit not in self.rates:
            return None
        share = statistics.median(self._shares) if self._shares else None
        if load.cpu_saturated() and (share is None or share >= BUSY_TASK):
            self._steady_since = now  # busy CPU: probing would only stretch the tasks
            return None
        step = max(1, self.limit // 4)
        target = min(self.limit + step, self.bounds.ceiling, self._memory_room(running, load))
        if target <= self.limit:
            self._steady_since = now
            return None
        self._probe_from = self.limit
        self._base = self.limit
        reason = f"probing {target} (every {period:.0f}s while steady at {self.limit})"
        return self._move(now, target, reason, self.rates[self.limit])

    def _memory_cut(self, now: float, memory: float) -> LimitChange | None:
        target = max(self.bounds.min, self.limit // 2)
        self.phase, self._probe_from, self._base = Phase.STEADY, None, None
        self._steady_since = now
        if target >= self.limit:
            return None
        reason = (
            f"memory {memory:.0%} in use, at or above the pressure threshold "
            f"{self.memory_threshold:.0%}: halving"
        )
        return self._move(now, target, reason, None)

    def _memory_room(self, running: int, load: LoadReading) -> int:
        """The most tasks at once that keep memory under the threshold (margin kept),
        at the tasks' measured peak; unbounded when not known."""
        used, total = load.memory_used, load.memory_total_mb
        if used is None or not total or not self._peaks:
            return self.bounds.ceiling
        per_task = statistics.median(self._peaks)
        room = (self.memory_threshold - MEMORY_MARGIN - used) * total
        more = math.floor(room / per_task) if per_task > 0 else self.bounds.ceiling
        return max(self.bounds.min, running + max(0, more))

    def _move(self, now: float, new: int, reason: str, rate: float | None) -> LimitChange:
        new = min(max(new, self.bounds.min), self.bounds.ceiling)
        old, self.limit = self.limit, new
        self._level = _Level(new, now)
        detail: dict[str, Any] = {"phase": self.phase.value}
        if rate is not None:
            detail["rate"] = round(rate, 4)
        detail["rates"] = {str(n): round(x, 4) for n, x in sorted(self.rates.items())}
        return LimitChange(now, old, new, reason, detail)
