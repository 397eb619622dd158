"""``planner train``: evaluate the duration model on a holdout, fit on everything, save.

``planner train [--pipeline P] [--db URL] [--models DIR] [--holdout F] [--quantile Q]
[--json]``. ``P`` is a pipeline name in the history or a pipeline file (then its history
and its ``schedule.quantile`` are used); without it every pipeline of the history is
trained, one after the other. The table compares the model with the grouped last-2 and
last-10 means and the flat ``last10 x 1.2`` rule on the last ``F`` of the attempts by
start time; the new model is saved, its digest recorded in the history (only models
recorded there are loaded), and made current unless the current model is better on the
recent holdout (the output says which one is live).

``--json`` prints, per pipeline::

    {"pipeline": ..., "rows": {"train": n, "test": n},
     "methods": {"model": {"mae_s", "mdape", "mean_abs_log", "overrun",
                           "median_bound_ratio"}, "last2": {...}, "last10": {...},
                 "last10_x1.2": {...}},
     "model_id": ...,
     "serving": {"method": "model" | "last2" | "last10", "reason": ...},
     "bound": {"bound_source", "bound_ok", "bound_overrun", "bound_ratio",
               "bound_target", "bound_note", "warning"}}

(a list of such documents when several pipelines were trained). Rates are fractions;
a metric that cannot be computed is null. ``serving`` says what predicts from now on: the
model only when it is not worse than the best grouped baseline on the holdout, else that
baseline, and why; ``bound`` whose bound serves and whether it met its target
(``bound_ok`` false: its overrun was more than 3x the target, ``warning`` says so in one
line). Notes (baselines only, which model was kept, why) go to stderr with ``--json``.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, Any

from planner.commands.common import (
    add_db_option,
    add_json_option,
    add_models_option,
    print_json,
)
from planner.errors import UsageError

if TYPE_CHECKING:
    from planner.learning.training import TrainingResult

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "train",
        help="train and evaluate duration models",
        description=(
            "Evaluate the duration model against the baselines on the most recent attempts, "
            "then fit on everything, save it, and make it live unless the current model "
            "is better."
        ),
    )
    parser.add_argument(
        "--pipeline",
        metavar="P",
        help="pipeline name in the history, or a pipeline file (default: every pipeline)",
    )
    add_db_option(parser)
    add_models_option(parser)
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.3,
        metavar="F",
        help="fraction of the attempts, the latest by start time, used as test part (0.3)",
    )
    parser.add_argument(
        "--quantile",
        type=float,
        default=None,
        metavar="Q",
        help="coverage target of the upper bound (default: the pipeline's, else 0.95)",
    )
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.service import Instance, history_exists, resolve_target
    from planner.service.training import train

    target = resolve_target(args.pipeline, db=args.db, models=args.models)
    quantile = args.quantile if args.quantile is not None else target.quantile
    if not history_exists(target.db_url):
        raise UsageError(target.db_url, "no history to train on (run a pipeline first)")
    with Instance.open(target) as instance:
        # the history is the registry's ledger: each saved model's digest is recorded
        # there, and only recorded models are loaded later
        results = train(instance, target.name, holdout=args.holdout, quantile=quantile)
    if quantile is None:
        from planner.defaults import QUANTILE

        quantile = QUANTILE
    if args.json:
        docs = [r.as_json() for r in results]
        print_json(docs[0] if len(docs) == 1 else docs)
        for r in results:
            for note in r.messages:
                print(f"planner: train: {r.pipeline}: {note}", file=sys.stderr)
            if r.bound_warning:
                print(f"planner: train: {r.pipeline}: warning: {r.bound_warning}", file=sys.stderr)
        return 0
    for r in results:
        _print_result(r, quantile)
    return 0


def _fmt(value: float | None, kind: str) -> str:
    if value is None or math.isnan(value):  # not computed
        return "-"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "s":  # as every duration of the CLI: 412ms, 42.0s, 1m 5s, 2.5h
        from planner.units import format_duration

        return format_duration(value)
    return f"{value:.2f}"


def _print_result(result: TrainingResult, quantile: float) -> None:
    from rich.table import Table

    from planner.display import console as make_console

    console = make_console()
    table = Table(
        title=(
            f"{result.pipeline}: holdout of {result.rows_test} attempts "
            f"(trained on {result.rows_train}), bound at q={quantile:g}"
        ),
        title_justify="left",
    )
    for column in ("method", "MAE", "MdAPE", "mean |log|", "overrun", "bound/actual"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method, m in result.methods.items():
        table.add_row(
            method,
            _fmt(m["mae_s"], "s"),
            _fmt(m["mdape"], "pct"),
            _fmt(m["mean_abs_log"], "x"),
            _fmt(m["overrun"], "pct"),
            _fmt(m["median_bound_ratio"], "x"),
        )
    console.print(table)
    ev = result.evaluation
    if ev is not None and len(ev.halves) == 2:
        halves = ", ".join(
            f"half {i + 1}: model overrun {h['model']['overrun']:.1%}, "
            f"bound/actual {h['model']['median_bound_ratio']:.2f}"
            for i, h in enumerate(ev.halves)
            if h["model"]["n"]
        )
        if halves:
            console.print(halves)
    if ev is not None and len(ev.per_step) > 1:
        _print_steps(console, ev.per_step)
    kind = "baselines only" if result.baselines_only else f"model variant {result.variant}"
    console.print(
        f"saved {result.model_id} ({kind}, {result.seconds:.1f} s); live: {result.current_id}"
    )
    for note in result.messages:  # one line each, never wrapped (a model's problem, ...)
        console.print(f"note: {note}", soft_wrap=True, markup=False, highlight=False)
    if result.bound_warning:  # the live bound missed its target on the holdout
        console.print(
            f"warning: {result.bound_warning}", soft_wrap=True, markup=False, highlight=False
        )


def _print_steps(console: Any, per_step: dict[str, dict[str, dict[str, float]]]) -> None:
    """Per step (the 10 with most holdout attempts): model vs the grouped baselines."""
    from rich.table import Table

    steps = sorted(per_step, key=lambda s: (-per_step[s]["model"]["n"], s))
    shown = steps[:10]
    title = "per step" + (f" (10 of {len(steps)}, most attempts first)" if len(steps) > 10 else "")
    table = Table(title=title, title_justify="left")
    for column in ("step", "n", "model MdAPE", "last2", "last10", "model MAE", "overrun"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in shown:
        m = per_step[step]
        table.add_row(
            step,
            str(int(m["model"]["n"])),
            _fmt(m["model"]["mdape"], "pct"),
            _fmt(m["last2"]["mdape"], "pct"),
            _fmt(m["last10"]["mdape"], "pct"),
            _fmt(m["model"]["mae_s"], "s"),
            _fmt(m["model"]["overrun"], "pct"),
        )
    console.print(table)
