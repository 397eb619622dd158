"""``planner run PIPELINE``: run a pipeline once (or resume a run), recording everything.

Exit codes: 0 every task succeeded; 1 some task failed (or the run was stopped); 2 bad
input; 3 another run of the pipeline is active (nothing was started). On a terminal a
live table shows each step's progress; otherwise one plain line per finished task. With
``--json`` stdout carries only the ``planner show`` document of the run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from planner.commands.common import (
    add_db_option,
    add_executor_option,
    add_json_option,
    add_models_option,
    add_selection_options,
    duration_type,
    positive_int,
    print_json,
    split_list,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "run",
        help="run a pipeline now",
        description="Run a pipeline once: steps in dependency order, tasks per account, "
        "retries, one run at a time. Exit 0 ok, 1 failed tasks, 2 bad input, 3 run active.",
    )
    parser.add_argument("pipeline", metavar="PIPELINE", help="pipeline file (.yaml, .json, .toml)")
    add_selection_options(parser)
    parser.add_argument(
        "--accounts", type=split_list, metavar="A,B", help="only these accounts (comma-separated)"
    )
    parser.add_argument(
        "--resume", metavar="RUN_ID", help="run only the tasks that did not succeed in RUN_ID"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="tasks at once (default: the pipeline's concurrency.max)",
    )
    parser.add_argument(
        "--grace",
        type=duration_type(allow_zero=True),
        default=10.0,
        metavar="DURATION",
        help="on SIGINT/SIGTERM, how long running tasks may finish before they are killed "
        "(10s; a second signal kills at once)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress output, only the final summary"
    )
    parser.add_argument(
        "--run-id",
        type=_run_id,
        metavar="ID",
        help="the new run's id (default: a new one; the daemon names the runs it starts)",
    )
    parser.add_argument(
        "--as-file",
        metavar="FILE",
        help="PIPELINE stands for FILE: relative paths start, and tasks run, in FILE's "
        "folder (the daemon runs its saved copy of a file's last valid version)",
    )
    add_executor_option(parser)
    add_db_option(parser)
    add_models_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def _run_id(text: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return text


def handle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from planner.config import load_pipeline
    from planner.config.models import Executor
    from planner.display.progress import LiveProgress, PlainProgress
    from planner.display.runs import print_show
    from planner.execution import RunRequest, handle_signals
    from planner.service import Instance
    from planner.service.running import prepare_run
    from planner.service.views import show_document
    from planner.units import format_duration

    as_file = Path(args.as_file).resolve() if args.as_file else None
    pipeline = load_pipeline(args.pipeline, as_file=as_file)
    request = RunRequest(
        run_id=args.run_id,
        steps=args.steps,
        with_deps=args.with_deps,
        accounts=args.accounts,
        resume=args.resume,
        concurrency=args.concurrency,
        stop_grace=args.grace,
    )
    observer: LiveProgress | PlainProgress | None = None
    if not (args.json or args.quiet):
        observer = LiveProgress() if sys.stdout.isatty() else PlainProgress(sys.stdout)
    with Instance.for_pipeline(pipeline, db=args.db, models=args.models) as instance:
        try:
            executor = Executor.from_flag(args.executor) if args.executor else None
            session = prepare_run(instance, pipeline, request, observer=observer, executor=executor)
            session.watch()  # the ETA and alerts against the plan, while it runs
            plan = session.plan

            def started(run_id: str) -> None:
                # Said once the run holds its lease: a refused run prints only its error.
                for note in session.notes:  # stderr: stdout carries only --json's document
                    print(f"planner: note: {note}", file=sys.stderr)
                if not (args.json or args.quiet):
                    bounds = session.directives.adaptive if args.concurrency is None else None
                    limit = (
                        f"{bounds.start} (adaptive, {bounds.min} to {bounds.ceiling})"
                        if bounds is not None
                        else str(plan.concurrency)
                    )
                    print(
                        f"run {run_id}: predicted {format_duration(plan.run.predicted_s)} "
                        f"(bound {format_duration(plan.run.bound_s)}) for {len(plan.tasks)} "
                        f"task(s) at concurrency {limit}, longest first",
                        flush=True,
                    )

            with handle_signals(session.runner):
                result = session.execute(started).result
        finally:
            if isinstance(observer, LiveProgress):
                observer.close()
        document = show_document(instance.store, result.run_id)
    if args.json:
        print_json(document)
        return result.exit_code
    if args.quiet:
        print_show(document, failures_only=True)
    run = document["run"]
    versus = ""
    if run["predicted_s"] is not None and run["duration_s"] is not None:
        versus = (
            f" in {format_duration(run['duration_s'])} (predicted "
            f"{format_duration(run['predicted_s'])}, bound {format_duration(run['bound_s'])})"
        )
    print(f"run {result.run_id}: {result.status}{versus}: {_counts(result.counts)}")
    if result.takeover is not None and result.takeover.run_id:
        print(
            f"took over from run {result.takeover.run_id} ({result.takeover.reason}): "
            f"marked abandoned, {result.takeover.interrupted} task(s) interrupted, "
            f"{result.takeover.groups_stopped} process group(s) stopped"
        )
    if result.lease_lost:
        print("the lease was lost to another run (database unreachable or too slow?): stopped")
    print(f"logs: {pipeline.state_dir / 'logs' / result.run_id}")
    print(f"details: planner show {result.run_id} --pipeline {args.pipeline}")
    if result.status != "succeeded" and _unfinished(result.counts):
        print(f"resume: planner run {args.pipeline} --resume {result.run_id}")
    return result.exit_code


def _unfinished(counts: Mapping[str, int]) -> bool:
    """Whether a resume would run anything (some task did not succeed)."""
    return any(n and status != "succeeded" for status, n in counts.items())


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no tasks"
