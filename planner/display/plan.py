"""A plan as the command line prints it (``planner plan``, the demo's last stage)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planner.planning.model import Plan

__all__ = ["print_plan"]


def _sources(sources: Counter[str]) -> str:
    if len(sources) == 1:
        return next(iter(sources))
    return ", ".join(f"{name} ({n})" for name, n in sources.most_common(3)) + (
        f", {len(sources) - 3} more" if len(sources) > 3 else ""
    )


def print_plan(
    plan: Plan,
    *,
    tasks: bool = False,
    brief: bool = False,
    write: Callable[[str], None] | None = None,
) -> None:
    """The plan as a short summary (``brief``: the run, next start and advice only)."""
    from rich.markup import escape
    from rich.table import Table

    from planner.display import console as make_console
    from planner.units import format_duration, format_size

    emit: Callable[[Any], None] = make_console().print if write is None else _rich_writer(write)
    run = plan.run
    if not brief:
        by_step: dict[str, list[Any]] = {}
        for t in plan.tasks:
            by_step.setdefault(t.step, []).append(t)
        table = Table(title=f"plan of {escape(plan.pipeline)}", title_justify="left")
        for name in ("step", "tasks", "span", "lower bound", "bound", "longest task", "source"):
            table.add_column(name, justify="left" if name in ("step", "source") else "right")
        for step in plan.steps:
            mine = by_step.get(step.step, [])
            longest = max((t.predicted_s for t in mine), default=0.0)
            table.add_row(
                escape(step.step),
                str(step.tasks),
                format_duration(step.makespan_s),
                format_duration(step.lower_bound_s),
                format_duration(step.bound_s),
                format_duration(longest),
                escape(_sources(Counter(t.source for t in mine))),
            )
        emit(table)
    emit(
        f"run: predicted {format_duration(run.predicted_s)}, bound "
        f"{format_duration(run.bound_s)} at concurrency {plan.concurrency}"
    )
    emit(f"  critical path: {' -> '.join(run.critical_path) or '-'}")
    if not brief:
        emit(f"  concurrency: {plan.concurrency_rule}")
        for line in _contention_lines(plan):
            emit(f"  contention: {escape(line)}")
        emit(f"  bound: {run.bound_rule}")
    interval = plan.interval
    if interval.next_start is not None and interval.interval_s is not None:
        emit(
            f"next start: {interval.next_start.isoformat(timespec='seconds')} (interval "
            f"{format_duration(interval.interval_s)}, {interval.policy}: {interval.reason})"
        )
    else:
        emit(f"next start: none ({interval.reason})")
    if not brief and len(plan.what_if) > 1:
        cells = []
        for w in plan.what_if:
            mark = "*" if w.concurrency == plan.concurrency else ""
            memory = format_size(w.memory_mb * 1024**2) if w.memory_mb is not None else "?"
            if not w.fits_memory:
                memory += ", does not fit"
            flat = (
                f", {format_duration(w.flat_makespan_s)} without contention"
                if w.flat_makespan_s is not None
                else ""
            )
            cells.append(f"{w.concurrency}{mark}: {format_duration(w.makespan_s)} ({memory}{flat})")
        emit("what if concurrency: " + "; ".join(cells))
    if tasks:
        table = Table(title="tasks, longest first", title_justify="left")
        for name in ("step", "account", "predicted", "bound", "source", "slot"):
            table.add_column(
                name, justify="left" if name in ("step", "account", "source") else "right"
            )
        for t in sorted(plan.tasks, key=lambda t: -t.predicted_s):
            table.add_row(
                escape(t.step),
                escape(t.account or "-"),
                format_duration(t.predicted_s),
                format_duration(t.bound_s),
                escape(t.source),
                str(t.slot),
            )
        emit(table)
    for rec in plan.recommendations:
        emit(f"- {rec.text}")


def _contention_lines(plan: Plan) -> list[str]:
    """Per step with a curve its figures (those of ``--json``'s ``contention``), then the
    steps with too little evidence."""
    from planner.planning.contention import contention_json

    lines = []
    for step, found in plan.contention.items():
        doc = contention_json(found)
        if doc is None:
            continue
        peak = "none" if doc["peak"] is None else f"{doc['peak']:.1f}"
        knee = "none" if doc["knee"] is None else str(doc["knee"])
        r2 = "exact" if doc["r2"] is None else f"{doc['r2']:.2f}"
        observed = ", ".join(
            f"{n}: x{x:.2f}" for n, x in zip(doc["levels"], doc["observed"], strict=True)
        )
        lines.append(
            f"step {step}: sigma {doc['sigma']:g}, kappa {doc['kappa']:g}, knee {knee}, "
            f"peak {peak}, R² {r2}; stretch seen {observed} (asked at {doc['reference']})"
        )
    return [*lines, *plan.contention_notes]


def _rich_writer(write: Callable[[str], None]) -> Callable[[Any], None]:
    """Render rich objects to text and hand each line to ``write``."""
    from rich.console import Console

    def emit(obj: Any) -> None:
        console = Console(width=160, color_system=None, soft_wrap=True)
        with console.capture() as capture:
            console.print(obj)
        for line in capture.get().rstrip("\n").splitlines():
            write(line)

    return emit
