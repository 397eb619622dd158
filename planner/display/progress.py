"""Progress displays of a run for the command line: a live table on a terminal, plain
lines otherwise. Both are :class:`planner.execution.RunObserver` implementations: they
receive the run's typed events (:mod:`planner.execution.events`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from planner.status import AttemptStatus

if TYPE_CHECKING:
    from planner.execution import RunEvent, RunStopping, TaskFinished, TaskRetrying

__all__ = ["LiveProgress", "PlainProgress"]


def _failure(event: TaskFinished | TaskRetrying) -> str:
    """``exit 75, network_error`` (what is known of a failed attempt), or ``memory limit
    512MiB`` for one stopped over its step's memory limit."""
    if event.memory_limit is not None:
        from planner.execution.memory import format_memory

        return f"memory limit {format_memory(event.memory_limit)}"
    parts = [f"exit {event.exit_code}"] if event.exit_code is not None else []
    if event.error_class:
        parts.append(event.error_class)
    return ", ".join(parts)


def _stopping(event: RunStopping) -> str:
    from planner.execution import StopReason
    from planner.units import format_duration

    if event.reason is StopReason.FORCED:
        return f"stopping: second signal, killing {event.running} running task(s) now"
    why = "signal received" if event.reason is StopReason.SIGNAL else "the lease was lost"
    grace = f"{event.grace_s:g}s" if event.grace_s < 60 else format_duration(event.grace_s)
    wait = f"waiting up to {grace} for {event.running} running task(s)"
    return f"stopping: {why}, {wait}" if event.running else f"stopping: {why}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.0f}%"


def _watched(event: object) -> str | None:
    """The line of an alert the run's monitor raised (warnings and worse)."""
    from planner.service.monitor import AlertRaised

    if isinstance(event, AlertRaised) and event.alert.level != "info":
        return f"{event.alert.level}: {event.alert.text}"
    return None


def _pressure(event: RunEvent) -> str | None:
    """The line of a memory-pressure event or a change of the adaptive limit (``None``
    for other events)."""
    import shlex

    from planner.execution import (
        LimitChanged,
        PressureCleanup,
        PressureForcedStart,
        PressurePaused,
        PressureResumed,
    )
    from planner.units import format_duration

    match event:
        case LimitChanged(old=old, new=new, reason=reason):
            return f"concurrency limit {old} -> {new}: {reason}"
        case PressurePaused(memory=memory, threshold=threshold, waiting=waiting):
            return (
                f"paused: memory {_percent(memory)} in use > {_percent(threshold)}; "
                f"{waiting} task(s) waiting"
            )
        case PressureResumed(memory=memory, threshold=threshold, paused_s=paused_s, peak=peak):
            return (
                f"resumed: memory {_percent(memory)} in use < {_percent(threshold)} after "
                f"{format_duration(paused_s)} paused (peak {_percent(peak)})"
            )
        case PressureForcedStart(memory=memory, threshold=threshold, idle_s=idle_s):
            return (
                f"paused {format_duration(idle_s)} with no task running (memory "
                f"{_percent(memory)} in use > {_percent(threshold)}): starting 1 task anyway"
            )
        case PressureCleanup(cleanup=done):
            shown = shlex.join(done.command)
            if done.exit_code is None:
                return f"cleanup {shown}: could not start ({done.error})"
            killed = f", {done.error}" if done.error else ""
            took = format_duration(done.duration_s)
            return f"cleanup {shown}: exit {done.exit_code} in {took}{killed}"
    return None


class PlainProgress:
    """One line per attempt that ended, for logs and pipes (the command prints the run's
    first and last lines)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", file=self.out, flush=True)

    def on_event(self, event: RunEvent) -> None:
        from planner.execution import (
            RunStarted,
            RunStopping,
            TaskFinished,
            TaskRetrying,
            TasksCancelled,
            TaskSkipped,
        )

        match event:
            case RunStarted():
                self.t0 = time.monotonic()  # times count from the run's start, not planning
            case TaskRetrying():
                self._line(
                    f"{self._name(event.key.label, event.attempt)}: {event.status} "
                    f"({_failure(event)}), retry {event.attempt + 1} in {event.delay_s:.1f}s"
                )
            case TaskFinished():
                failed = event.status != AttemptStatus.SUCCEEDED
                detail = f" ({_failure(event)})" if failed else ""
                self._line(f"{self._name(event.key.label, event.attempt)}: {event.status}{detail}")
            case TaskSkipped(key=key, reason=reason):
                self._line(f"{key.label}: skipped ({reason})")
            case TasksCancelled(keys=keys):
                self._line(f"cancelled {len(keys)} task(s) that had not started")
            case RunStopping():
                self._line(_stopping(event))
            case _:
                line = _pressure(event) or _watched(event)
                if line is not None:
                    self._line(line)

    @staticmethod
    def _name(label: str, attempt: int) -> str:
        return f"{label} attempt {attempt}" if attempt > 1 else label


@dataclass
class _StepProgress:
    total: int = 0
    done: int = 0
    running: int = 0
    failed: int = 0
    retries: int = 0
    skipped: int = 0
    cancelled: int = 0
    first_start: float | None = None
    last_end: float | None = None


class LiveProgress:
    """A live rich table: per step, tasks done of total, running, retries, failed,
    skipped, cancelled, elapsed; lines above it when the run stops early."""

    def __init__(self) -> None:
        from rich.live import Live

        from planner.display import console

        self.steps: dict[str, _StepProgress] = {}
        self.run_id = ""
        self.eta = ""
        self.t0 = time.monotonic()
        self.live = Live(
            get_renderable=self._render,
            console=console(),
            refresh_per_second=4,
            transient=False,
        )
        self._started = False

    def _render(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        from planner.units import format_duration

        now = time.monotonic()
        eta = f"  {self.eta}" if self.eta else ""
        table = Table(title=f"run {self.run_id}  {format_duration(now - self.t0)}{eta}")
        columns = ("step", "done", "running", "retries", "failed", "skipped", "cancelled")
        for column in (*columns, "elapsed"):
            table.add_column(column, justify="left" if column == "step" else "right")
        for step, p in self.steps.items():
            elapsed = ""
            if p.first_start is not None:
                end = p.last_end if (p.running == 0 and p.last_end) else now
                elapsed = format_duration(end - p.first_start)
            failed = f"[red]{p.failed}[/red]" if p.failed else "0"
            table.add_row(
                escape(step),
                f"{p.done}/{p.total}",
                str(p.running),
                str(p.retries),
                failed,
                str(p.skipped),
                str(p.cancelled),
                elapsed,
            )
        return table

    def on_event(self, event: RunEvent) -> None:
        from planner.execution import (
            RunFinished,
            RunStarted,
            RunStopping,
            TaskFinished,
            TaskRetrying,
            TasksCancelled,
            TaskSkipped,
            TaskStarted,
        )

        now = time.monotonic()
        match event:
            case RunStarted():
                self._start(event.run_id, event.totals)
            case TaskStarted(key=key):
                p = self.steps[key.step]
                p.running += 1
                if p.first_start is None:
                    p.first_start = now
            case TaskRetrying(key=key):
                p = self.steps[key.step]
                p.running = max(0, p.running - 1)
                p.retries += 1
                p.last_end = now
            case TaskFinished(key=key, status=status):
                p = self.steps[key.step]
                p.running = max(0, p.running - 1)
                p.last_end = now
                p.done += 1
                if status == AttemptStatus.CANCELLED:
                    p.cancelled += 1
                elif status != AttemptStatus.SUCCEEDED:
                    p.failed += 1
            case TaskSkipped(key=key):
                p = self.steps[key.step]
                p.done += 1
                p.skipped += 1
            case TasksCancelled(keys=keys):
                for key in keys:
                    p = self.steps[key.step]
                    p.done += 1
                    p.cancelled += 1
                self._say(f"cancelled {len(keys)} task(s) that had not started")
            case RunStopping():
                self._say(_stopping(event))
            case RunFinished():
                self.close()
            case _:
                self._progress(event)
                line = _pressure(event) or _watched(event)
                if line is not None:
                    self._say(line)

    def _progress(self, event: object) -> None:
        """Keep the ETA of the monitor's last evaluation for the title."""
        from planner.service.monitor import RunProgress

        if isinstance(event, RunProgress) and event.eta is not None:
            from planner.units import format_duration

            parts = [f"ETA {event.eta.astimezone():%H:%M:%S}"]
            if event.predicted_s is not None:
                parts.append(f"predicted {format_duration(event.predicted_s)}")
            if event.bound_s is not None:
                parts.append(f"bound {format_duration(event.bound_s)}")
            self.eta = ", ".join(parts)

    def _say(self, text: str) -> None:
        """A line above the table (it stays when the table is redrawn)."""
        from rich.markup import escape

        self.live.console.print(escape(text))

    def _start(self, run_id: str, totals: Mapping[str, int]) -> None:
        self.run_id = run_id
        self.steps = {s: _StepProgress(total=n) for s, n in totals.items()}
        self.t0 = time.monotonic()
        from planner.execution.stopping import stop_signals_blocked

        with stop_signals_blocked():  # rich's refresh thread must not take our signals
            self.live.start()
        self._started = True

    def close(self) -> None:
        if self._started:
            self.live.stop()
            self._started = False
