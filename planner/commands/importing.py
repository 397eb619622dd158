"""``planner import swf FILE`` and ``planner import csv FILE --map ...``: history from elsewhere.

Both parse the whole file first (a bad mapping or a missing column stops with exit 2
before the database is touched), then write every valid row in one transaction;
re-importing a file adds nothing. Malformed lines are skipped and reported.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.commands.common import add_db_option, add_json_option, print_json
from planner.errors import InputFileError

if TYPE_CHECKING:
    from planner.learning.importers.common import ImportSummary, ParsedImport

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "import",
        help="import run history from another system (SWF log, CSV table)",
        description="Import run history from another system into the history store.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    swf = kinds.add_parser(
        "swf",
        help="a Standard Workload Format log (Parallel Workloads Archive), plain or .gz",
        description="Import an SWF log: one attempt per job (account = user, step = "
        "application, quantity = processors; times from the header's start time).",
    )
    _common_options(swf)
    swf.set_defaults(handler=handle_swf)

    table = kinds.add_parser(
        "csv",
        help="any CSV table of runs (sacct export, CI durations, cron log), plain or .gz",
        description="Import a CSV table of runs; --map says which column feeds which field.",
    )
    _common_options(table)
    table.add_argument(
        "--map",
        required=True,
        metavar="FIELD=COLUMN,...",
        help="fields: step, account, quantity, run_id, started_at, finished_at, duration_s, "
        "status, exit_code, param.NAME; e.g. step=job,run_id=build,started_at=created_at,"
        "duration_s=duration_s",
    )
    table.add_argument(
        "--time-format",
        metavar="FORMAT",
        help="strptime format of the time columns, or 'epoch' for Unix seconds (default: ISO 8601)",
    )
    table.add_argument(
        "--timezone",
        metavar="TZ",
        help="zone of times written without one, e.g. Europe/Paris (default: UTC)",
    )
    table.set_defaults(handler=handle_csv)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", type=Path, help="the file to import")
    parser.add_argument(
        "--pipeline",
        metavar="NAME",
        help="pipeline the history belongs to (default: the file name without extensions)",
    )
    add_db_option(parser)
    add_json_option(parser)


def handle_swf(args: argparse.Namespace) -> int:
    from planner.learning.importers.swf import parse_swf

    parsed = parse_swf(args.file)
    return _store_and_report(args, parsed, f"swf:{args.file.name}")


def handle_csv(args: argparse.Namespace) -> int:
    from planner.learning.importers.table import parse_csv, parse_mapping

    mapping = parse_mapping(args.map)
    parsed = parse_csv(args.file, mapping, time_format=args.time_format, timezone=args.timezone)
    return _store_and_report(args, parsed, f"csv:{args.file.name}")


def _store_and_report(args: argparse.Namespace, parsed: ParsedImport, source: str) -> int:
    from planner.history import HistoryStore, history_url
    from planner.learning.importers.common import default_pipeline_name, import_parsed

    if parsed.frame.empty and parsed.unfinished:
        raise InputFileError(
            str(args.file), f"nothing to import: all {parsed.unfinished} jobs are unfinished"
        )
    if parsed.frame.empty:
        lines = ", ".join(map(str, parsed.malformed_lines[:5]))
        detail = f" ({len(parsed.malformed_lines)} malformed, lines {lines})" if lines else ""
        raise InputFileError(str(args.file), f"no valid record to import{detail}")
    pipeline = args.pipeline or default_pipeline_name(args.file)
    store = HistoryStore(history_url(args.db))
    try:
        summary = import_parsed(
            store, parsed, pipeline=pipeline, source=source, file=str(args.file)
        )
    finally:
        store.close()
    if args.json:
        print_json(summary.as_json())
    else:
        _print_summary(summary)
    return 0


def _print_summary(summary: ImportSummary) -> None:
    from rich.table import Table

    from planner.commands.common import console as make_console

    table = Table(title=f"import into pipeline {summary.pipeline!r}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("file", summary.file)
    table.add_row("records read", f"{summary.read:,}")
    table.add_row("imported", f"{summary.imported:,}")
    table.add_row("already there", f"{summary.duplicates:,}")
    malformed = f"{summary.malformed:,}"
    if summary.malformed_lines:
        shown = ", ".join(map(str, summary.malformed_lines))
        more = ", ..." if summary.malformed > len(summary.malformed_lines) else ""
        malformed += f" (lines {shown}{more})"
    table.add_row("malformed, skipped", malformed)
    if summary.unfinished:
        table.add_row("unfinished, skipped", f"{summary.unfinished:,}")
    if summary.span:
        table.add_row("time span (UTC)", f"{summary.span[0]}  ->  {summary.span[1]}")
    table.add_row("steps / accounts", f"{summary.steps:,} / {summary.accounts:,}")
    make_console().print(table)
