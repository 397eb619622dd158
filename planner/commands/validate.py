"""``planner validate PIPELINE``: check a pipeline file and summarise it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from planner.commands.common import (
    add_db_option,
    add_json_option,
    add_models_option,
    add_selection_options,
    print_json,
)
from planner.config import check_pipeline_file, select_steps
from planner.errors import ConfigError, ConfigIssue

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "validate",
        help="check a pipeline file",
        description="Check a pipeline file; print every error, or a summary when valid.",
    )
    parser.add_argument("pipeline", metavar="PIPELINE", help="pipeline file (.yaml, .json, .toml)")
    add_selection_options(parser)
    add_db_option(parser)
    add_models_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    pipeline, issues = check_pipeline_file(args.pipeline)
    order: list[str] = []
    if pipeline is not None:
        try:
            order = [s.id for s in select_steps(pipeline, args.steps, with_deps=args.with_deps)]
        except ConfigError as exc:
            issues = exc.issues
    estimate = None
    if pipeline is not None and not issues:
        from planner.commands.plan import planning_summary

        estimate = planning_summary(
            pipeline, db=args.db, models=args.models, steps=args.steps, with_deps=args.with_deps
        )
    if args.json:
        document: dict[str, Any] = {
            "valid": not issues,
            "errors": [i.as_dict() for i in issues],
            "order": order,
        }
        if estimate is not None:
            document["estimate"] = {k: v for k, v in estimate.items() if k != "lines"}
        print_json(document)
        return 2 if issues else 0
    if issues:
        _print_issues(args.pipeline, issues)
        return 2
    assert pipeline is not None
    accounts = pipeline.account_list
    print(f"{args.pipeline}: valid pipeline {pipeline.name!r}")
    print(f"  steps in order: {' -> '.join(order)}")
    shown = ", ".join(accounts[:5]) + (
        f", ... ({len(accounts)} in all)" if len(accounts) > 5 else ""
    )
    print(f"  accounts: {shown or 'none'}")
    print(f"  tasks per run: {pipeline.tasks_per_run(set(order))}")
    if estimate is None:
        print("  estimate: no history yet (run it once, then validate again)")
    else:
        for line in estimate["lines"]:
            print(f"  {line}")
    return 0


def _print_issues(source: str, issues: list[ConfigIssue]) -> None:
    for issue in issues:
        where = f"{source}: {issue.loc}" if issue.loc else source
        print(f"planner: error: {where}: {issue.msg}", file=sys.stderr)
