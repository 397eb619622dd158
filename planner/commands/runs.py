"""``planner runs`` lists runs; ``planner show RUN_ID`` shows one run's attempts.

The JSON documents are those of :mod:`planner.service.views`.
"""

from __future__ import annotations

import argparse
from typing import Any

from planner.commands.common import add_db_option, add_json_option, print_json

__all__ = ["register"]


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


def handle_runs(args: argparse.Namespace) -> int:
    from planner.service import Instance, history_exists, resolve_target
    from planner.service.views import runs_document

    target = resolve_target(args.pipeline, db=args.db)
    if not history_exists(target.db_url):  # reading must not create a database
        if args.json:
            print_json({"runs": []})
        else:
            print(
                f"no history at {target.db_url.removeprefix('sqlite:///')}: run a pipeline "
                "first (planner run PIPELINE), or name one with --pipeline FILE or --db URL"
            )
        return 0
    with Instance.open(target) as instance:
        document = runs_document(
            instance.store,
            target.name,
            limit=args.limit,
            notes=not args.json,
            definition=target.pipeline,
        )
    if args.json:
        print_json(document)
        return 0
    _print_runs(instance.url, document["runs"])
    return 0


def _print_runs(url: str, rows: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from planner.display import console as make_console
    from planner.display.runs import styled
    from planner.units import format_duration

    if not rows:
        make_console().print(escape(f"no runs yet in {url}"))
        return
    table = Table(title=escape(f"runs in {url}"), title_justify="left")
    columns = ["run", "pipeline", "status", "started", "duration", "predicted", "tasks"]
    with_notes = any(row.get("note") for row in rows)
    for column in columns + (["note"] if with_notes else []):
        table.add_column(
            column,
            justify="right" if column in ("duration", "predicted") else "left",
            no_wrap=column in ("run", "started", "status"),
        )
    for row in rows:
        duration = row["duration_s"]
        tasks = ", ".join(f"{k} {v}" for k, v in row["tasks"].items())
        cells = [
            row["run_id"],
            escape(row["pipeline"]),
            styled(row["status"]),
            (row["started_at"] or "")[:19].replace("T", " "),
            format_duration(duration) if duration is not None else "running",
            _predicted(row),
            tasks,
        ]
        table.add_row(*cells, *([escape(row.get("note") or "")] if with_notes else []))
    make_console().print(table)


def _predicted(row: dict[str, Any]) -> str:
    """``predicted (bound)`` of a run, or ``-`` without a stored plan."""
    from planner.units import format_duration

    if row["predicted_s"] is None:
        return "-"
    return f"{format_duration(row['predicted_s'])} ({format_duration(row['bound_s'])})"


def handle_show(args: argparse.Namespace) -> int:
    from planner.display.runs import print_show
    from planner.service import Instance, history_exists, resolve_target
    from planner.service.views import show_document

    target = resolve_target(args.pipeline, db=args.db)
    if not history_exists(target.db_url):
        from planner.errors import UsageError

        raise UsageError(args.run_id, f"no history at {target.db_url}")
    with Instance.open(target) as instance:
        document = show_document(
            instance.store, args.run_id, notes=not args.json, pipeline=target.pipeline
        )
    if args.json:
        print_json(document)
        return 0
    print_show(document)
    return 0
