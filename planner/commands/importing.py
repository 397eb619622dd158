"""``planner import swf|csv|sacct FILE``: history from elsewhere
(:func:`planner.service.importing.import_history`).

Each parses the whole file first (a bad mapping or a missing column stops with exit 2
before the database is touched), then writes every valid row in one transaction;
re-importing a file adds nothing. Malformed lines are skipped and reported with what is
wrong with the first of them; when no line is valid the import stops with one error line,
exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.commands.common import add_db_option, add_json_option, print_json

if TYPE_CHECKING:
    from planner.learning.importers.common import ImportSummary

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "import",
        help="import run history (SWF log, CSV table, Slurm sacct)",
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
        help="fields: step, account, quantity, run_id, started_at, finished_at, duration_s "
        "(seconds or Slurm's [D-]HH:MM:SS), status, exit_code, param.NAME; e.g. step=job,"
        "run_id=build,started_at=created_at,duration_s=duration_s",
    )
    table.add_argument(
        "--time-format",
        metavar="FORMAT",
        help="strptime format of the time columns, or 'epoch' for Unix seconds (default: ISO 8601)",
    )
    _timezone_option(table)
    table.set_defaults(handler=handle_csv)

    sacct = kinds.add_parser(
        "sacct",
        help="Slurm accounting records: sacct --parsable2 output, no --map needed",
        description="Import `sacct --parsable2` output (bar-separated, with its header; "
        "--parsable too), one attempt per job: run_id = JobID, step = JobName, account = "
        "User (else Account), quantity = NCPUS (else ReqCPUS, AllocCPUS), Start, End, "
        "Elapsed, State, ExitCode; params partition, timelimit (s), reqmem (MiB); MaxRSS "
        "and TotalCPU when present. Job steps (12345.batch, .extern, .0) are folded into "
        "their job. Needs JobID, JobName, Start and Elapsed or End, e.g. sacct --parsable2 "
        "--format=JobID,JobName,User,Account,Partition,NCPUS,ReqCPUS,ReqMem,Timelimit,"
        "Submit,Start,End,Elapsed,State,ExitCode,MaxRSS,TotalCPU. A job is stored once per "
        "pipeline, whichever export it comes from.",
    )
    _common_options(sacct)
    _timezone_option(sacct, sacct=True)
    sacct.set_defaults(handler=handle_sacct)


def _timezone_option(parser: argparse.ArgumentParser, *, sacct: bool = False) -> None:
    what = (
        "zone of sacct's times (it prints the local times of the cluster, without a zone)"
        if sacct
        else "zone of times written without one"
    )
    parser.add_argument(
        "--timezone", metavar="TZ", help=f"{what}, e.g. Europe/Paris (default: UTC)"
    )


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
    return _import_and_report(args, "swf")


def handle_csv(args: argparse.Namespace) -> int:
    return _import_and_report(
        args, "csv", mapping=args.map, time_format=args.time_format, timezone=args.timezone
    )


def handle_sacct(args: argparse.Namespace) -> int:
    return _import_and_report(args, "sacct", timezone=args.timezone)


def _import_and_report(args: argparse.Namespace, kind: str, **options: Any) -> int:
    from planner.history import history_url
    from planner.service.importing import import_history

    summary = import_history(
        history_url(args.db), args.file, kind, pipeline=args.pipeline, **options
    )
    if args.json:
        print_json(summary.as_json())
    else:
        _print_summary(summary)
    return 0


def _print_summary(summary: ImportSummary) -> None:
    from rich.table import Table

    from planner.display import console as make_console

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
    for number, reason in enumerate(summary.malformed_reasons[:3]):
        table.add_row("why" if number == 0 else "", reason)
    if summary.unfinished:
        table.add_row("unfinished, skipped", f"{summary.unfinished:,}")
    if summary.span:
        table.add_row("time span (UTC)", f"{summary.span[0]}  ->  {summary.span[1]}")
    if summary.folded:
        table.add_row("job steps, folded", f"{summary.folded:,}")
    table.add_row("steps / accounts", f"{summary.steps:,} / {summary.accounts:,}")
    make_console().print(table)
