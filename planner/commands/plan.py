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
    pass

__all__ = ["register"]


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
    from planner.display.plan import print_plan
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
