"""``planner plan PIPELINE``: the plan of the next run, stored in the history.

Estimates come from the predictor (trained model, else history baselines, else a
default); planning itself is pure (:mod:`planner.planning`). Prints a table per step, the
critical path, the interval decision, the what-if table and the recommendations; ``--json``
prints the document of :func:`planner.planning.plan.plan_to_json`.

Also used by other commands: :func:`planning_summary` (for ``planner validate``) and
:func:`demo_plan_stage` (for ``planner demo``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.clock import SYSTEM_CLOCK
from planner.commands.common import (
    add_db_option,
    add_json_option,
    add_models_option,
    add_selection_options,
    models_dir,
    positive_int,
    print_json,
    split_list,
)
from planner.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from planner.config import Pipeline
    from planner.history import HistoryStore
    from planner.planning.model import PastRun, Plan, TaskEstimate, TaskQuery

__all__ = [
    "compute_plan",
    "demo_plan_stage",
    "estimate_tasks",
    "past_runs",
    "planning_summary",
    "register",
    "store_plan",
]

#: Seconds assumed for a task with no history and no model.
DEFAULT_TASK_S = 60.0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "plan",
        help="predict the next run and decide its concurrency and next start",
        description=(
            "Predict each task and the whole run (with a calibrated bound), choose the "
            "concurrency and grouping, decide the next start, and store the plan."
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
    add_db_option(parser)
    add_models_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.config import load_pipeline
    from planner.history import HistoryStore

    pipeline = load_pipeline(args.pipeline)
    if args.quantity is not None and args.quantity < 0:
        raise UsageError("--quantity", f"must be >= 0, got {args.quantity:g}")
    now = SYSTEM_CLOCK.now()
    with HistoryStore.for_pipeline(pipeline, db=args.db) as store:
        plan = compute_plan(
            pipeline,
            store,
            models=models_dir(args.models),
            now=now,
            steps=args.steps,
            with_deps=args.with_deps,
            accounts=args.accounts,
            concurrency=args.concurrency,
            quantity=args.quantity,
        )
        document = store_plan(store, plan)
    for warning in plan.warnings:  # one line each, on stderr, in both modes
        print(f"planner: warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(document)
    else:
        _print_plan(plan, warnings=False)
    return 0


def compute_plan(
    pipeline: Pipeline,
    store: HistoryStore,
    *,
    models: Path,
    now: datetime,
    steps: Sequence[str] | None = None,
    with_deps: bool = False,
    accounts: Sequence[str] | None = None,
    concurrency: int | None = None,
    quantity: float | None = None,
    current_start: datetime | None = None,
    frame: pd.DataFrame | None = None,
) -> Plan:
    """The plan of a run of ``pipeline`` starting at ``current_start`` (default ``now``).

    ``frame``: the pipeline's attempts when the caller has already read them from ``store``.
    """
    import psutil

    from planner.config import select_steps
    from planner.planning.plan import build_plan, provisional_concurrency, task_queries

    chosen = select_steps(pipeline, steps, with_deps=with_deps)
    if accounts is not None:
        known = set(pipeline.account_list)
        unknown = [a for a in accounts if a not in known]
        if unknown:
            raise UsageError("--accounts", f"unknown account(s): {', '.join(unknown)}")
    cpu_count = os.cpu_count()
    free_mb = psutil.virtual_memory().available / 1024**2
    queries = task_queries(
        pipeline,
        chosen,
        concurrency=provisional_concurrency(pipeline, concurrency, cpu_count),
        accounts=accounts,
        quantity=quantity,
    )
    if frame is None:
        frame = store.attempts_frame(pipeline=pipeline.name)
    estimates, warnings = estimate_tasks(pipeline, queries, frame, models=models, now=now)
    return build_plan(
        pipeline,
        chosen,
        queries,
        estimates,
        past_runs=past_runs(store, pipeline.name),
        now=now,
        cpu_count=cpu_count,
        free_memory_mb=free_mb,
        concurrency=concurrency,
        current_start=current_start,
        warnings=warnings,
    )


def store_plan(store: HistoryStore, plan: Plan, run_id: str | None = None) -> dict[str, Any]:
    """Save ``plan`` in the history (with the run it was made for, when known); returns
    the stored document. A runner calls this with its ``run_id`` when a run starts."""
    from planner.planning.plan import plan_to_json

    document = plan_to_json(plan)
    store.save_plan(
        plan.pipeline, run_id, plan.created_at, plan.run.predicted_s, plan.run.bound_s, document
    )
    return document


def estimate_tasks(
    pipeline: Pipeline,
    queries: Sequence[TaskQuery],
    frame: pd.DataFrame,
    *,
    models: Path,
    now: datetime,
) -> tuple[list[TaskEstimate], list[str]]:
    """Estimates for ``queries`` from the predictor (model, else baselines, else default),
    and the predictor's warnings."""
    from planner.learning.predictor import Predictor

    predictor = Predictor.load(
        models, pipeline.name, frame, quantile=pipeline.schedule.quantile, default_s=DEFAULT_TASK_S
    )
    return list(predictor.predict(queries, now)), list(predictor.warnings)


def past_runs(store: HistoryStore, pipeline: str) -> list[PastRun]:
    """Finished runs of ``pipeline`` with the prediction of the plan made for each.

    A plan stored with the run's id is that run's plan; for a run without one, the newest
    plan stored without a run id between the previous run's start and its own start
    (``planner plan`` just before the run) is taken.
    """
    from bisect import bisect_right

    from planner.planning.model import PastRun

    stored = store.plans(pipeline)
    by_run = {p.run_id: p for p in reversed(stored) if p.run_id}
    loose = sorted((p for p in stored if not p.run_id), key=lambda p: p.created_at)
    loose_at = [p.created_at for p in loose]
    runs = sorted(store.list_runs(pipeline), key=lambda r: r.started_at)
    out = []
    previous = None
    for run in runs:
        plan = by_run.get(run.run_id)
        if plan is None:  # the newest loose plan made at or before the start, if after previous
            k = bisect_right(loose_at, run.started_at) - 1
            if k >= 0 and (previous is None or loose_at[k] > previous):
                plan = loose[k]
        previous = run.started_at
        if run.finished_at is None:
            continue
        out.append(
            PastRun(
                run_id=run.run_id,
                started_at=run.started_at,
                finished_at=run.finished_at,
                status=run.status,
                predicted_s=plan.predicted_s if plan else None,
                bound_s=plan.bound_s if plan else None,
            )
        )
    return out


def planning_summary(
    pipeline: Pipeline,
    *,
    db: str | None = None,
    models: Path | None = None,
    now: datetime | None = None,
    steps: Sequence[str] | None = None,
    with_deps: bool = False,
) -> dict[str, Any] | None:
    """For ``planner validate``: the run estimate (of the selected ``steps``, default all)
    and recommended interval, or ``None`` when the pipeline has no history yet. Nothing
    is stored.

    Returns ``{"predicted_s", "bound_s", "critical_path", "concurrency", "interval_s",
    "next_start", "lines": [human-readable lines]}``.
    """
    from planner.history import HistoryStore, history_url
    from planner.units import format_duration

    url = history_url(db, pipeline.state_dir)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None  # no history yet; validating must not create a database
    moment = now or SYSTEM_CLOCK.now()
    with HistoryStore(url) as store:
        if store.count_attempts(pipeline.name) == 0:
            return None
        plan = compute_plan(
            pipeline, store, models=models_dir(models), now=moment, steps=steps, with_deps=with_deps
        )
    interval = plan.interval
    lines = [
        f"estimated run: {format_duration(plan.run.predicted_s)} (bound "
        f"{format_duration(plan.run.bound_s)}) at concurrency {plan.concurrency}",
        "recommended interval: "
        + (format_duration(interval.interval_s) if interval.interval_s is not None else "none")
        + f" ({interval.reason})",
    ]
    return {
        "predicted_s": plan.run.predicted_s,
        "bound_s": plan.run.bound_s,
        "critical_path": list(plan.run.critical_path),
        "concurrency": plan.concurrency,
        "interval_s": interval.interval_s,
        "next_start": interval.next_start.isoformat() if interval.next_start else None,
        "lines": lines,
    }


def demo_plan_stage(
    pipeline: Pipeline,
    *,
    db: str | None,
    models: Path,
    now: datetime,
    current_start: datetime | None = None,
    write: Callable[[str], None] = print,
) -> Plan:
    """For ``planner demo``: train on the history the demo made (when a trainer is
    available), plan the next run, store the plan, and print it with its next start."""
    from planner.history import HistoryStore

    with HistoryStore.for_pipeline(pipeline, db=db) as store:
        frame = store.attempts_frame(pipeline=pipeline.name)  # read once: training adds no rows
        _train_if_possible(pipeline, frame, models=models, write=write)
        plan = compute_plan(
            pipeline, store, models=models, now=now, current_start=current_start, frame=frame
        )
        store_plan(store, plan)
    _print_plan(plan, brief=True, write=write)
    return plan


def _train_if_possible(
    pipeline: Pipeline, frame: pd.DataFrame, *, models: Path, write: Callable[[str], None]
) -> None:
    """Train on the pipeline's history when the trainer is available; say what happened."""
    try:
        from planner.learning.registry import Registry
        from planner.learning.training import train_pipeline
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("planner.learning"):
            raise
        write("learn: no trainer available; planning from history baselines")
        return
    result = train_pipeline(
        frame,
        pipeline=pipeline.name,
        registry=Registry(models),
        quantile=pipeline.schedule.quantile,
    )
    kind = "baselines only" if result.baselines_only else result.variant
    write(
        f"learn: trained on {result.rows_train} attempts ({kind}); model {result.model_id}"
        + (" is live" if result.promoted else f" kept {result.current_id} live")
    )
    for message in result.messages:
        write(f"learn: {message}")


def _print_plan(
    plan: Plan,
    *,
    brief: bool = False,
    write: Callable[[str], None] | None = None,
    warnings: bool = True,
) -> None:
    from rich.table import Table

    from planner.commands.common import console as make_console
    from planner.units import format_duration, format_size

    console = make_console()
    emit: Callable[[Any], None] = console.print if write is None else _rich_writer(write)
    for warning in plan.warnings if warnings else ():
        emit(f"[yellow]warning:[/] {warning}")
    if not brief:
        for step in plan.steps:
            tasks = sorted(
                (t for t in plan.tasks if t.step == step.step), key=lambda t: -t.predicted_s
            )
            table = Table(
                title=f"step {step.step}: {step.tasks} task(s), makespan "
                f"{format_duration(step.makespan_s)} (lower bound "
                f"{format_duration(step.lower_bound_s)})"
            )
            for name in ("account", "predicted", "bound", "source", "slot"):
                table.add_column(name, justify="right" if name != "source" else "left")
            for t in tasks[:10]:
                table.add_row(
                    t.account or "-",
                    format_duration(t.predicted_s),
                    format_duration(t.bound_s),
                    t.source,
                    str(t.slot),
                )
            if len(tasks) > 10:
                table.add_row(f"... {len(tasks) - 10} more", "", "", "", "")
            emit(table)
    run = plan.run
    emit(
        f"run of {plan.pipeline}: predicted {format_duration(run.predicted_s)}, bound "
        f"{format_duration(run.bound_s)} at concurrency {plan.concurrency} "
        f"({plan.concurrency_rule})"
    )
    emit(f"  critical path: {' -> '.join(run.critical_path) or '-'}")
    emit(f"  bound: {run.bound_rule}")
    interval = plan.interval
    if interval.next_start is not None and interval.interval_s is not None:
        emit(
            f"next start: {interval.next_start.isoformat()} (interval "
            f"{format_duration(interval.interval_s)}, {interval.policy}: {interval.reason})"
        )
    else:
        emit(f"next start: none ({interval.reason})")
    if not brief:
        table = Table(title="what if")
        for name in ("concurrency", "predicted run", "memory"):
            table.add_column(name, justify="right")
        for w in plan.what_if:
            mark = " *" if w.concurrency == plan.concurrency else ""
            memory = format_size(w.memory_mb * 1024**2) if w.memory_mb is not None else "?"
            if not w.fits_memory:
                memory += " (does not fit)"
            table.add_row(f"{w.concurrency}{mark}", format_duration(w.makespan_s), memory)
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
