"""``planner plan PIPELINE``: the plan of the next run.

Prints a summary: one row per step, the run's prediction and bound along the critical
path, the concurrency and why, the next start, what other concurrencies would give, and
the recommendations; ``--tasks`` adds every task. ``--json`` prints the document of
:func:`planner.planning.plan.plan_to_json`. Nothing is stored unless ``--save``
(``planner run`` stores the plan of every run with its id).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from planner.commands.common import (
    add_db_option,
    add_json_option,
    add_models_option,
    add_selection_options,
    positive_int,
    print_json,
    split_list,
)

if TYPE_CHECKING:
    from planner.planning.model import Plan

__all__ = ["print_plan", "register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "plan",
        help="predict the next run and decide its concurrency and next start",
        description=(
            "Predict each task and the whole run (with a calibrated bound), choose the "
            "concurrency, decide the next start, and recommend what to change."
        ),
    )
    parser.add_argument("pipeline", metavar="PIPELINE", help="pipeline file (.yaml, .json, .toml)")
    add_selection_options(parser)
    parser.add_argument(
        "--accounts", type=split_list, metavar="A,...", help="only these accounts (comma-separated)"
    )
    parser.add_argument(
        "--concurrency", type=positive_int, metavar="N", help="plan at N tasks at once"
    )
    parser.add_argument(
        "--quantity", type=float, metavar="N", help="quantity of every task (default: per step)"
    )
    parser.add_argument("--tasks", action="store_true", help="also list every task")
    parser.add_argument(
        "--save", action="store_true", help="store the plan in the history (not tied to a run)"
    )
    add_db_option(parser)
    add_models_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.config import load_pipeline
    from planner.planning.plan import plan_to_json
    from planner.service import Instance
    from planner.service.planning import PlanRequest, make_plan, save_plan

    pipeline = load_pipeline(args.pipeline)
    request = PlanRequest(
        steps=args.steps,
        with_deps=args.with_deps,
        accounts=args.accounts,
        concurrency=args.concurrency,
        quantity=args.quantity,
    )
    with Instance.for_pipeline(pipeline, db=args.db, models=args.models) as instance:
        plan = make_plan(instance, pipeline, request)
        document = save_plan(instance.store, plan) if args.save else plan_to_json(plan)
    for warning in plan.warnings:  # one line each, on stderr, in both modes
        print(f"planner: warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(document)
    else:
        print_plan(plan, tasks=args.tasks)
        if args.save:
            print(f"plan stored in {instance.url}")
    return 0


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

    from planner.commands.common import console as make_console
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
            cells.append(f"{w.concurrency}{mark}: {format_duration(w.makespan_s)} ({memory})")
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
