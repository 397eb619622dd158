"""``planner validate PIPELINE``: check a pipeline file and summarise it.

The summary shows the shape of the step graph as levels: a step's level is one more than
its deepest dependency's, so the steps of one level never depend on each other and can
run side by side. The pipeline modules (pydantic, YAML) are imported by the handler, not
when the command line starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from planner.commands.common import (
    add_db_option,
    add_json_option,
    add_models_option,
    add_selection_options,
    print_json,
)

if TYPE_CHECKING:
    from planner.config import Pipeline, Step
    from planner.errors import ConfigIssue

__all__ = ["format_levels", "register", "step_levels"]

#: Width the levels line is wrapped to.
WIDTH = 88
#: A level with more steps than this shows the first few and a count.
LEVEL_SHOWN = 6


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
    from planner.config import check_pipeline_file, select_steps
    from planner.errors import ConfigError

    pipeline, issues = check_pipeline_file(args.pipeline)
    selected: list[Step] = []
    if pipeline is not None:
        try:
            selected = select_steps(pipeline, args.steps, with_deps=args.with_deps)
        except ConfigError as exc:
            issues = exc.issues
    order = [s.id for s in selected]
    levels = step_levels(selected)
    estimate = None
    if pipeline is not None and not issues:
        estimate = _estimate(pipeline, args)
    if args.json:
        document: dict[str, Any] = {
            "valid": not issues,
            "errors": [i.as_dict() for i in issues],
            "order": order,
            "levels": levels,
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
    per_account = {s.id for s in selected if s.per_account}
    for line in format_levels(levels, per_account):
        print(f"  {line}")
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


def step_levels(steps: Sequence[Step]) -> list[list[str]]:
    """The ids of ``steps`` by level (dependencies outside ``steps`` ignored), each level
    in the order given."""
    from planner.graph import levels

    ids = {s.id for s in steps}
    deps: Mapping[str, list[str]] = {s.id: [d for d in s.depends_on if d in ids] for s in steps}
    depth = levels(deps)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in steps:
        out[depth[step.id]].append(step.id)
    return out


def format_levels(
    levels: Sequence[Sequence[str]], per_account: Sequence[str] | set[str] = ()
) -> list[str]:
    """A few lines: ``steps: 7 in 3 levels ...`` then ``1 | 2*, 3, 4 | 21`` wrapped to
    :data:`WIDTH`; ``*`` marks a per-account step, a long level ends with its count."""
    n_steps = sum(len(level) for level in levels)
    if not n_steps:
        return ["steps: none selected"]
    head = f"steps: {n_steps} in {len(levels)} level{'s' if len(levels) != 1 else ''}"
    if len(levels) < n_steps:
        head += ", the steps of a level can run side by side"
    if per_account:
        head += "; * per account"
    parts = []
    for level in levels:
        names = [f"{i}*" if i in per_account else i for i in level]
        if len(names) > LEVEL_SHOWN:
            names = [*names[: LEVEL_SHOWN - 1], f"... ({len(names)} steps)"]
        parts.append(", ".join(names))
    lines = [head]
    current = "  " + parts[0]
    for part in parts[1:]:
        if len(current) + 3 + len(part) > WIDTH - 2:
            lines.append(current)
            current = "  | " + part
        else:
            current += " | " + part
    lines.append(current)
    return lines


def _estimate(pipeline: Pipeline, args: argparse.Namespace) -> dict[str, Any] | None:
    """The run estimate from the history, or ``None`` when there is none yet (validating
    never creates a database)."""
    from planner.service import Instance, history_exists
    from planner.service.locations import pipeline_locations
    from planner.service.planning import planning_summary

    target = pipeline_locations(pipeline, db=args.db, models=args.models)
    if not history_exists(target.db_url):
        return None
    with Instance.open(target) as instance:
        return planning_summary(instance, pipeline, steps=args.steps, with_deps=args.with_deps)


def _print_issues(source: str, issues: list[ConfigIssue]) -> None:
    for issue in issues:
        where = f"{source}: {issue.loc}" if issue.loc else source
        print(f"planner: error: {where}: {issue.msg}", file=sys.stderr)
