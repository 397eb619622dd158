"""Memory pressure: no new task starts while the system's memory in use is too high.

A pipeline with ``memory_pressure`` gets a :class:`PressureGate` in its run loop. Before
the loop starts tasks it asks :meth:`PressureGate.admit` how many may start. The gate
reads the share of the system's memory in use through a :class:`MemoryProbe` at most
every ``check_every`` seconds, and only while a task is waiting to start or a pause is on:

- above ``threshold`` a pause (an *episode*) begins: nothing new starts, running tasks go
  on, and the episode's ``cleanup_command`` (if any) starts once, in its own session, in
  a thread (its tree killed after ``cleanup_timeout``, or when the run ends and it has
  not ended within the kill grace);
- the pause ends when a reading falls below the threshold;
- a pause never waits forever: after ``max_pause`` seconds with no task running, one task
  starts anyway (and again after each further ``max_pause`` with nothing running).

Each pause becomes a :class:`PressurePause` (start, end, memory at its start and its
peak, tasks held back, tasks started anyway, the cleanup's exit and duration), returned
by :meth:`PressureGate.close` at the end of the run. Times are the run's clock: ``now``
comes in as an argument, so a test drives the gate with the readings and times it wants.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from planner.errors import ExecutionError
from planner.execution.events import (
    PressureCleanup,
    PressureForcedStart,
    PressurePaused,
    PressureResumed,
    RunEvent,
)
from planner.execution.process import Launch, TaskProcess, spawn
from planner.execution.stopping import block_stop_signals

if TYPE_CHECKING:
    from planner.clock import Clock
    from planner.config.models import MemoryPressure

__all__ = [
    "CleanupRecord",
    "FixedMemoryProbe",
    "MemoryProbe",
    "PressureGate",
    "PressurePause",
    "SystemMemoryProbe",
]


class MemoryProbe(Protocol):
    """Where the share of the system's memory in use comes from."""

    def fraction_in_use(self) -> float:
        """Memory in use as a fraction of the total (0.86 for 86 %)."""
        ...


class SystemMemoryProbe:
    """This machine: ``psutil.virtual_memory().percent / 100``."""

    def fraction_in_use(self) -> float:
        import psutil

        return float(psutil.virtual_memory().percent) / 100.0


class FixedMemoryProbe:
    """Says whatever ``fraction`` is set to (tests, dry runs); counts its readings."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.readings = 0

    def fraction_in_use(self) -> float:
        self.readings += 1
        return self.fraction


@dataclass(frozen=True)
class CleanupRecord:
    """How a pressure episode's cleanup command ended. ``exit_code`` is ``None`` when it
    could not start (``error`` says why); ``timed_out`` when it was killed at
    ``cleanup_timeout``."""

    command: tuple[str, ...]
    exit_code: int | None
    duration_s: float
    timed_out: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": list(self.command),
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "timed_out": self.timed_out,
            "error": self.error,
        }


@dataclass(frozen=True)
class PressurePause:
    """One pressure episode of a run: from the reading above the threshold to the reading
    below it (``memory_at_end``), or to the run's end or stop (``memory_at_end`` None)."""

    started_at: datetime
    ended_at: datetime
    threshold: float
    memory_at_start: float
    memory_peak: float
    memory_at_end: float | None
    #: tasks ready to start that it held back when it began
    waiting: int
    #: tasks started anyway after ``max_pause`` with no task running
    forced_starts: int
    cleanup: CleanupRecord | None

    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """The pause as JSON values (times in ISO 8601, fractions of the total memory)."""
        return {
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "threshold": self.threshold,
            "memory_at_start": round(self.memory_at_start, 4),
            "memory_peak": round(self.memory_peak, 4),
            "memory_at_end": None if self.memory_at_end is None else round(self.memory_at_end, 4),
            "waiting": self.waiting,
            "forced_starts": self.forced_starts,
            "cleanup": self.cleanup.as_dict() if self.cleanup is not None else None,
        }


class _Cleanup:
    """One episode's cleanup command, run to its end in a thread of its own."""

    def __init__(self, launch: Launch, clock: Clock, timeout: float, kill_grace: float) -> None:
        command = launch.command
        self.command = command if isinstance(command, tuple) else (command,)
        self.result: CleanupRecord | None = None
        self.reported = False
        self._launch, self._clock = launch, clock
        self._timeout, self._kill_grace = timeout, kill_grace
        self._lock = threading.Lock()
        self._process: TaskProcess | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pressure-cleanup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        block_stop_signals()
        t0 = self._clock.monotonic()
        try:
            self._run_from(t0)
        except Exception as exc:  # a thread of ours: the failure is recorded, not lost
            duration = max(0.0, self._clock.monotonic() - t0)
            self.result = CleanupRecord(self.command, None, duration, error=f"failed: {exc}")

    def _run_from(self, t0: float) -> None:
        clock = self._clock
        try:
            process = spawn(self._launch, clock.monotonic)
        except ExecutionError as exc:
            self.result = CleanupRecord(self.command, None, 0.0, error=exc.what)
            return
        with self._lock:
            self._process = process
            if self._stopping:
                process.request_kill(0.0)
        info = process.wait(t0 + self._timeout, self._kill_grace)
        error = None
        if info.timed_out:
            error = f"killed after {self._timeout:g}s (cleanup_timeout)"
        elif info.cancelled:
            error = "killed at the end of the run (still running after the kill grace)"
        duration = max(0.0, info.ended_mono - t0)
        self.result = CleanupRecord(self.command, info.exit_code, duration, info.timed_out, error)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def finish(self, grace: float) -> None:
        """Let it end within ``grace`` seconds (real time: this bounds a run's end even on
        a test clock), else kill its tree; returns once its thread is done."""
        self._thread.join(grace)
        if not self._thread.is_alive():
            return
        with self._lock:
            self._stopping = True
            if self._process is not None:
                self._process.request_kill(0.0)
        self._thread.join()


@dataclass
class _Episode:
    started_mono: float
    started_at: datetime
    memory_at_start: float
    peak: float
    waiting: int
    cleanup: _Cleanup | None
    idle_since: float | None = None
    #: when a task will start anyway (a task waits and nothing runs), else None
    force_at: float | None = None
    forced_starts: int = 0
    ended_at: datetime | None = None
    memory_at_end: float | None = None


class PressureGate:
    """Decides, from the system's memory in use, whether a run may start tasks now.

    ``wall`` turns the run's monotonic readings into UTC times; ``emit`` receives the
    pressure events (in the loop's thread); ``cleanup_launch(n)`` builds the launch of
    episode ``n``'s cleanup command (not called when there is none). The cleanup's own
    times come from ``clock``.
    """

    def __init__(
        self,
        settings: MemoryPressure,
        probe: MemoryProbe,
        *,
        clock: Clock,
        wall: Callable[[float], datetime],
        emit: Callable[[RunEvent], None],
        cleanup_launch: Callable[[int], Launch] | None = None,
        kill_grace: float = 5.0,
    ) -> None:
        self.settings = settings
        self.probe = probe
        self.clock = clock
        self.wall = wall
        self.emit = emit
        self.cleanup_launch = cleanup_launch
        self.kill_grace = kill_grace
        self._next_check = -math.inf
        self._last = 0.0
        self._episode: _Episode | None = None
        self._episodes: list[_Episode] = []

    @property
    def paused(self) -> bool:
        """Whether a pause is on (no task may start, but for a forced one)."""
        return self._episode is not None

    @property
    def next_wake(self) -> float:
        """When the gate next has something to do (a reading, or a forced start): the
        loop, with nothing running, sleeps until then (``inf`` when no pause is on)."""
        episode = self._episode
        if episode is None:
            return math.inf
        if episode.force_at is not None:
            return min(self._next_check, episode.force_at)
        return self._next_check

    def admit(self, now: float, wanted: int, *, running: int, waiting: Callable[[], int]) -> int:
        """How many of the ``wanted`` tasks (0 when none is ready) may start at ``now``:
        all of them, none during a pause, or one when a pause has had no task running for
        ``max_pause``. ``waiting()`` counts the tasks held back (read when a pause
        begins)."""
        self._report_cleanups()
        threshold = self.settings.threshold
        episode = self._episode
        if episode is None:
            if wanted <= 0 or now < self._next_check:
                return wanted
            reading = self._read(now)
            if reading <= threshold:
                return wanted
            episode = self._begin(now, reading, waiting(), running)
        elif now >= self._next_check:
            reading = self._read(now)
            episode.peak = max(episode.peak, reading)
            if reading < threshold:
                self._end(now, reading)
                paused_s = now - episode.started_mono
                self.emit(PressureResumed(reading, threshold, paused_s, episode.peak))
                return wanted
        episode.force_at = None
        if running > 0:
            episode.idle_since = None
            return 0
        if episode.idle_since is None:
            episode.idle_since = now
        if wanted <= 0:
            return 0
        force_at = episode.idle_since + self.settings.max_pause
        if now < force_at:  # (the same sum as the loop's wake-up: no rounding gap)
            episode.force_at = force_at
            return 0
        idle = now - episode.idle_since
        episode.forced_starts += 1
        episode.idle_since = None
        self.emit(PressureForcedStart(self._last, threshold, idle))
        return 1

    def stop(self, now: float) -> None:
        """The run stops starting tasks: a pause on ends here."""
        if self._episode is not None:
            self._end(now, None)

    def close(self, now: float) -> tuple[PressurePause, ...]:
        """The run is over: end a pause still on, give a cleanup still running the kill
        grace to end (then kill it), report the cleanups, and return every pause of the
        run, oldest first."""
        self.stop(now)
        for episode in self._episodes:
            if episode.cleanup is not None:
                episode.cleanup.finish(self.kill_grace)
        self._report_cleanups()
        return tuple(self._record(e) for e in self._episodes)

    def _read(self, now: float) -> float:
        self._next_check = now + self.settings.check_every
        self._last = float(self.probe.fraction_in_use())
        return self._last

    def _begin(self, now: float, reading: float, waiting: int, running: int) -> _Episode:
        cleanup = None
        command = self.settings.cleanup_command
        if command and self.cleanup_launch is not None:
            launch = self.cleanup_launch(len(self._episodes) + 1)
            timeout = self.settings.cleanup_timeout
            cleanup = _Cleanup(launch, self.clock, timeout, self.kill_grace)
        episode = _Episode(now, self.wall(now), reading, reading, waiting, cleanup)
        self._episode = episode
        self._episodes.append(episode)
        shown = cleanup.command if cleanup is not None else None
        self.emit(PressurePaused(reading, self.settings.threshold, waiting, running, shown))
        return episode

    def _end(self, now: float, reading: float | None) -> None:
        episode = self._episode
        assert episode is not None
        episode.ended_at = self.wall(now)
        episode.memory_at_end = reading
        self._episode = None

    def _report_cleanups(self) -> None:
        for episode in self._episodes:
            cleanup = episode.cleanup
            if cleanup is None or cleanup.reported or not cleanup.done:
                continue
            cleanup.reported = True
            if cleanup.result is not None:
                self.emit(PressureCleanup(cleanup.result))

    def _record(self, episode: _Episode) -> PressurePause:
        cleanup = episode.cleanup
        assert episode.ended_at is not None
        return PressurePause(
            started_at=episode.started_at,
            ended_at=episode.ended_at,
            threshold=self.settings.threshold,
            memory_at_start=episode.memory_at_start,
            memory_peak=episode.peak,
            memory_at_end=episode.memory_at_end,
            waiting=episode.waiting,
            forced_starts=episode.forced_starts,
            cleanup=cleanup.result if cleanup is not None else None,
        )
