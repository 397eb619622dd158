"""``planner report [--pipeline P] [--since 7d] [--json | --markdown]``: the execution report.

Active runs with their ETA and late tasks, each step's runs, success rate, P50/P95 and
trend, the prediction's recent error and bound coverage, the machine's health, the alerts,
and the plan's recommendations, over a period ending now. ``--json`` prints the document
of :func:`planner.service.report.build_report`; ``--markdown`` what a person pastes into a
ticket; otherwise rich tables (:mod:`planner.display.report`). A history that does
not exist is not created: one line names it (``--json``: an empty report), exit 0.
"""

from __future__ import annotations

import argparse
from typing import Any

from planner.commands.common import (
    add_db_option,
    add_models_option,
    duration_type,
    print_json,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "report",
        help="report on runs, steps, prediction, health and alerts",
        description="Report on the runs of a period: active runs with their ETA and late "
        "tasks, each step's success rate, P50/P95 duration and trend, the prediction's "
        "error and bound coverage, the machine's health, the alerts, and the plan's "
        "recommendations (with a pipeline file).",
    )
    parser.add_argument(
        "--pipeline",
        metavar="P",
        help="a pipeline name in the history, or a pipeline file (its history; and the "
        "recommendations, which need the file); default: every pipeline in the history",
    )
    parser.add_argument(
        "--since",
        type=duration_type(allow_zero=False),
        default="7d",
        metavar="DURATION",
        help="the period, ending now (a duration: 24h, 7d; default 7d)",
    )
    add_db_option(parser)
    add_models_option(parser)
    form = parser.add_mutually_exclusive_group()
    form.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout and nothing else"
    )
    form.add_argument(
        "--markdown", action="store_true", help="print markdown to paste into a ticket"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.display.report import print_markdown, print_plain
    from planner.service import Instance, history_exists, resolve_target
    from planner.service.report import build_report

    period_s: float = args.since  # argparse converts the default too
    target = resolve_target(args.pipeline, db=args.db, models=args.models)
    if not history_exists(target.db_url):  # reading must not create a database
        return _no_history(args, target.name, target.db_url, period_s)
    with Instance.open(target) as instance:
        document = build_report(
            instance, pipeline=target.name, definition=target.pipeline, period_s=period_s
        )
    if args.json:
        print_json(document)
    elif args.markdown:
        print_markdown(document)
    else:
        print_plain(document)
    return 0


def _no_history(args: argparse.Namespace, name: str | None, url: str, period_s: float) -> int:
    from planner.clock import SYSTEM_CLOCK
    from planner.service.report import empty_report

    path = url.removeprefix("sqlite:///")
    line = (
        f"no history at {path}: run a pipeline first (planner run PIPELINE), or name one "
        "with --pipeline FILE or --db URL"
    )
    if args.json:
        print_json(
            empty_report(
                pipeline=name, history=url, now=SYSTEM_CLOCK.now(), period_s=period_s, note=line
            )
        )
    else:
        print(line)
    return 0
