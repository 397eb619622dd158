"""Progress displays of a run for the command line: a live table on a terminal, plain
lines otherwise. Both are :class:`planner.execution.RunObserver` implementations."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from planner.execution import RunResult, TaskKey

__all__ = ["LiveProgress", "PlainProgress"]


@dataclass
class _StepProgress:
    total: int = 0
    done: int = 0
    running: int = 0
    failed: int = 0
    skipped: int = 0
    first_start: float | None = None
    last_end: float | None = None


class PlainProgress:
    """One line per event, for logs and pipes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", file=self.out, flush=True)

    def run_started(self, run_id: str, totals: Mapping[str, int], concurrency: int) -> None:
        self._line(f"run {run_id}: {sum(totals.values())} tasks, concurrency {concurrency}")

    def task_started(self, key: TaskKey, attempt: int) -> None:
        pass

    def task_finished(self, key: TaskKey, attempt: int, status: str, note: str) -> None:
        extra = f" ({note})" if note else ""
        retry = f" attempt {attempt}" if attempt > 1 else ""
        self._line(f"{key.label}{retry}: {status}{extra}")

    def run_finished(self, result: RunResult) -> None:
        self._line(f"run {result.run_id}: {result.status}")


class LiveProgress:
    """A live rich table: per step, tasks done of total, running, failed, elapsed."""

    def __init__(self) -> None:
        from rich.live import Live

        from planner.commands.common import console

        self.steps: dict[str, _StepProgress] = {}
        self.run_id = ""
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
        table = Table(title=f"run {self.run_id}  {format_duration(now - self.t0)}")
        for column in ("step", "done", "running", "failed", "skipped", "elapsed"):
            table.add_column(column, justify="left" if column == "step" else "right")
        for step, p in self.steps.items():
            elapsed = ""
            if p.first_start is not None:
                end = p.last_end if (p.running == 0 and p.last_end) else now
                elapsed = format_duration(end - p.first_start)
            failed = f"[red]{p.failed}[/red]" if p.failed else "0"
            table.add_row(
                escape(step), f"{p.done}/{p.total}", str(p.running), failed, str(p.skipped), elapsed
            )
        return table

    def run_started(self, run_id: str, totals: Mapping[str, int], concurrency: int) -> None:
        self.run_id = run_id
        self.steps = {s: _StepProgress(total=n) for s, n in totals.items()}
        self.t0 = time.monotonic()
        from planner.execution.stopping import stop_signals_blocked

        with stop_signals_blocked():  # rich's refresh thread must not take our signals
            self.live.start()
        self._started = True

    def task_started(self, key: TaskKey, attempt: int) -> None:
        p = self.steps[key.step]
        p.running += 1
        if p.first_start is None:
            p.first_start = time.monotonic()

    def task_finished(self, key: TaskKey, attempt: int, status: str, note: str) -> None:
        p = self.steps[key.step]
        if status not in ("skipped",) and not (status == "cancelled" and note == "not started"):
            p.running = max(0, p.running - 1)
        p.last_end = time.monotonic()
        if note.startswith("retry"):
            return
        p.done += 1
        if status == "skipped":
            p.skipped += 1
        elif status != "succeeded":
            p.failed += 1

    def run_finished(self, result: RunResult) -> None:
        self.close()

    def close(self) -> None:
        if self._started:
            self.live.stop()
            self._started = False
