"""``planner runs`` lists runs; ``planner show RUN_ID`` shows one run's attempts.

JSON shapes (times ISO 8601 with offset)::

    {"runs": [{"run_id", "pipeline", "status", "started_at", "finished_at", "duration_s",
               "tasks": {status: count}}]}
    {"run": {...as above...}, "attempts": [{"step", "account", "attempt", "status",
     "started_at", "finished_at", "duration_s", "exit_code", "error_class", "peak_rss_mb",
     "cpu_s"}]}
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.commands.common import add_db_option, add_json_option, db_url, print_json
from planner.errors import UsageError

if TYPE_CHECKING:
    from planner.history import AttemptRecord, HistoryStore, RunRecord

__all__ = ["print_show", "register", "run_summary", "show_document"]


def register(sub: Any) -> None:
    runs = sub.add_parser(
        "runs",
        help="list runs",
        description="List the runs in the history, newest first.",
    )
    runs.add_argument(
        "--pipeline",
        metavar="P",
        help="only runs of this pipeline (a name, or a pipeline file: its history is used)",
    )
    runs.add_argument("--limit", type=int, default=50, metavar="N", help="at most N runs (50)")
    add_db_option(runs)
    add_json_option(runs)
    runs.set_defaults(handler=handle_runs)

    show = sub.add_parser(
        "show",
        help="show one run's task attempts",
        description="Show a run and every attempt of its tasks.",
    )
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument(
        "--pipeline", metavar="FILE", help="a pipeline file whose history holds the run"
    )
    add_db_option(show)
    add_json_option(show)
    show.set_defaults(handler=handle_show)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None else None


def run_summary(record: RunRecord, counts: dict[str, int]) -> dict[str, Any]:
    """One run as in ``planner runs --json``."""
    return {
        "run_id": record.run_id,
        "pipeline": record.pipeline,
        "status": record.status,
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "duration_s": _round(record.duration_s),
        "tasks": dict(sorted(counts.items())),
    }


def _attempt(a: AttemptRecord) -> dict[str, Any]:
    return {
        "step": a.step,
        "account": a.account,
        "attempt": a.attempt,
        "status": a.status,
        "started_at": _iso(a.started_at),
        "finished_at": _iso(a.finished_at),
        "duration_s": _round(a.duration_s),
        "exit_code": a.exit_code,
        "error_class": a.error_class,
        "peak_rss_mb": _round(a.peak_rss_mb, 2),
        "cpu_s": _round(a.cpu_s),
    }


def show_document(store: HistoryStore, run_id: str, *, notes: bool = False) -> dict[str, Any]:
    """The ``planner show --json`` document of ``run_id`` (``UsageError`` when unknown).

    ``notes`` adds each attempt's reason (retry, skip, stop) as ``note``, for the table.
    """
    record = store.get_run(run_id)
    if record is None:
        raise UsageError(run_id, f"no such run in {store.url}")
    from planner.history.records import task_counts

    records = store.attempts_for_run(run_id)
    attempts = []
    for a in records:
        row = _attempt(a)
        if notes:
            row["note"] = a.reason or ""
        attempts.append(row)
    return {"run": run_summary(record, task_counts(records)), "attempts": attempts}


def _open_store(db: str | None, pipeline_arg: str | None) -> tuple[HistoryStore, str | None]:
    """The store to read and the pipeline name to filter on."""
    from planner.config.loader import SUFFIXES
    from planner.history import HistoryStore

    if pipeline_arg and Path(pipeline_arg).suffix.lower() in SUFFIXES:
        from planner.config import load_pipeline

        pipeline = load_pipeline(pipeline_arg)
        return HistoryStore.for_pipeline(pipeline, db), pipeline.name
    return HistoryStore(db_url(db)), pipeline_arg


def handle_runs(args: argparse.Namespace) -> int:
    store, name = _open_store(args.db, args.pipeline)
    try:
        records = store.list_runs(name, limit=args.limit)
        counts = store.runs_task_counts([r.run_id for r in records])
        rows = [run_summary(r, counts.get(r.run_id, {})) for r in records]
    finally:
        store.close()
    if args.json:
        print_json({"runs": rows})
        return 0
    from rich.markup import escape
    from rich.table import Table

    from planner.commands.common import console as make_console
    from planner.units import format_duration

    table = Table(title=escape(f"runs in {store.url}"), title_justify="left")
    for column in ("run", "pipeline", "status", "started", "duration", "tasks"):
        table.add_column(
            column,
            justify="right" if column == "duration" else "left",
            no_wrap=column in ("run", "started", "status"),
        )
    for row in rows:
        duration = row["duration_s"]
        tasks = ", ".join(f"{k} {v}" for k, v in row["tasks"].items())
        table.add_row(
            row["run_id"],
            escape(row["pipeline"]),
            _styled(row["status"]),
            (row["started_at"] or "")[:19].replace("T", " "),
            format_duration(duration) if duration is not None else "running",
            tasks,
        )
    make_console().print(table if rows else "no runs yet")
    return 0


def handle_show(args: argparse.Namespace) -> int:
    store, _ = _open_store(args.db, args.pipeline)
    try:
        document = show_document(store, args.run_id, notes=not args.json)
    finally:
        store.close()
    if args.json:
        print_json(document)
        return 0
    print_show(document)
    return 0


def _styled(status: str) -> str:
    colour = {
        "succeeded": "green",
        "failed": "red",
        "timed_out": "red",
        "running": "yellow",
        "cancelled": "magenta",
        "abandoned": "magenta",
        "interrupted": "magenta",
        "skipped": "dim",
    }.get(status)
    return f"[{colour}]{status}[/{colour}]" if colour else status


def print_show(document: dict[str, Any]) -> None:
    """A run and its attempts as rich tables."""
    from rich.markup import escape
    from rich.table import Table

    from planner.commands.common import console as make_console
    from planner.units import format_duration

    run = document["run"]
    console = make_console()
    duration = run["duration_s"]
    tasks = ", ".join(f"{k} {v}" for k, v in run["tasks"].items())
    console.print(
        f"run [bold]{run['run_id']}[/bold] of {escape(run['pipeline'])}: {_styled(run['status'])}, "
        f"{format_duration(duration) if duration is not None else 'running'} ({tasks})"
    )
    table = Table()
    for column in ("step", "account", "try", "status", "started", "duration", "exit"):
        table.add_column(column, no_wrap=column in ("status", "started", "duration"))
    for column in ("class", "peak MB", "cpu s"):
        table.add_column(column, justify="right")
    with_notes = any(a.get("note") for a in document["attempts"])
    if with_notes:
        table.add_column("note")
    for a in document["attempts"]:
        cells = [
            escape(a["step"]),
            escape(a["account"] or ""),
            str(a["attempt"]),
            _styled(a["status"]),
            (a["started_at"] or "")[11:19],
            format_duration(a["duration_s"]) if a["duration_s"] is not None else "",
            "" if a["exit_code"] is None else str(a["exit_code"]),
            escape(a["error_class"] or ""),
            "" if a["peak_rss_mb"] is None else f"{a['peak_rss_mb']:.1f}",
            "" if a["cpu_s"] is None else f"{a['cpu_s']:.2f}",
        ]
        if with_notes:
            cells.append(escape(a.get("note") or ""))
        table.add_row(*cells)
    console.print(table)
