"""``planner simulate --pipeline P``: replay recorded durations through schedule policies.

The history's attempts become recurring series (``--by run|step|account|step,account``)
replayed at a cadence (``--cadence 24h``, ``auto`` = each series' median gap, ``0`` = back
to back) under four policies: fixed, average of the last 10 x 1.2, planner's calibrated
bound, and the oracle. See :mod:`planner.planning.simulate` for the exact rules.

The replay is the use case :func:`planner.service.simulation.run_simulation`.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from planner.commands.common import add_db_option, add_json_option, print_json
from planner.defaults import SIMULATION_REFITS as REFITS
from planner.defaults import SIMULATION_TRAIN_FRACTION as TRAIN_FRACTION
from planner.errors import UsageError

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "simulate",
        help="replay recorded durations through schedule policies",
        description=(
            "Replay the recorded durations of a pipeline as recurring series through the "
            "fixed, avg10_x1.2, planner and oracle policies; print collisions, deferrals, "
            "idle time and lateness of each."
        ),
    )
    parser.add_argument(
        "--pipeline",
        required=True,
        metavar="P",
        help="pipeline name in the history, or a pipeline file (its name, state dir, cadence)",
    )
    parser.add_argument(
        "--by",
        default="run",
        choices=("run", "step", "account", "step,account"),
        help="one series per run of the pipeline (default), per step, per account, or both",
    )
    parser.add_argument(
        "--cadence",
        metavar="D",
        help="cadence: a duration (24h), 'auto' (median gap of each series) or 0 (back to "
        "back); default: the pipeline file's cadence, else 24h",
    )
    parser.add_argument(
        "--quantile",
        type=float,
        metavar="Q",
        help="coverage target of planner's bound (default: the file's, else 0.95)",
    )
    parser.add_argument(
        "--train-fraction",
        type=float,
        default=TRAIN_FRACTION,
        metavar="F",
        help="first part of the occurrences (in start order) that trains planner's model and "
        "warms up the rules; every policy is scored on the rest (default: %(default)s)",
    )
    parser.add_argument(
        "--refits",
        type=int,
        default=REFITS,
        metavar="N",
        help="fit planner's model N times along the scored part, each time on what had "
        "finished, as a periodic retraining would (default: %(default)s; 1 is fastest)",
    )
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.defaults import QUANTILE
    from planner.history import HistoryStore
    from planner.planning.simulate import simulation_to_json
    from planner.service import resolve_target
    from planner.service.simulation import load_series, run_simulation

    target = resolve_target(args.pipeline, db=args.db)
    name = target.name or args.pipeline
    schedule = target.pipeline.schedule if target.pipeline is not None else None
    cadence = _cadence(args.cadence, schedule.cadence if schedule else None)
    quantile = args.quantile if args.quantile is not None else (target.quantile or QUANTILE)
    if not 0 < quantile < 1:
        raise UsageError("--quantile", f"must be between 0 and 1, got {quantile:g}")
    if not 0 <= args.train_fraction < 1:
        raise UsageError("--train-fraction", f"must be in [0, 1), got {args.train_fraction:g}")
    if args.refits < 1:
        raise UsageError("--refits", f"must be >= 1, got {args.refits}")
    url = target.db_url
    with HistoryStore(url) as store:
        series, replay = load_series(store, name, args.by, target.pipeline)
    if not series:
        left = _left_out(replay)
        raise UsageError(
            "--pipeline",
            f"no finished attempts of pipeline {name!r} in {url}"
            + (f" to replay ({left})" if left else ""),
        )
    result = run_simulation(
        series,
        cadence,
        quantile=quantile,
        train_fraction=args.train_fraction,
        refits=args.refits,
        replay=replay,
    )
    if args.json:
        print_json(simulation_to_json(result))
        return 0
    _print_result(name, args.by, cadence, result)
    return 0


def _left_out(replay: Any) -> str:
    """``left out 3 partial, 2 cancelled, 1 resumed`` ("" when nothing was)."""
    parts = [f"{n} {reason}" for reason, n in replay.left_out.items() if n]
    return "left out " + ", ".join(parts) if parts else ""


def _replayed(replay: Any) -> str:
    """``replayed 40 full runs; left out 3 partial, 2 cancelled, 1 resumed``."""
    if replay.by == "run":
        what = f"{replay.replayed} full run{'s' if replay.replayed != 1 else ''}"
    else:
        what = f"{replay.replayed} occurrences by {replay.by}"
    left = _left_out(replay)
    if left and replay.by != "run":
        left += " (occurrences that did not run whole)"
    return f"replayed {what}" + (f"; {left}" if left else "")


def _cadence(text: str | None, default: float | None) -> float | str:
    from planner.units import parse_duration

    if text is None:
        return default if default is not None else 86400.0
    if text.strip().lower() == "auto":
        return "auto"
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError("--cadence", f"{exc}; or 'auto'") from None
    if seconds < 0:
        raise UsageError("--cadence", f"must be >= 0, got {text!r}")
    return seconds


def _print_result(name: str, by: str, cadence: float | str, result: Any) -> None:
    from rich.table import Table

    from planner.display import console as make_console
    from planner.units import format_duration

    if isinstance(cadence, str):
        cadence_text = "auto (median gap of each series)"
    elif cadence == 0:
        cadence_text = "0 (back to back)"
    else:
        cadence_text = format_duration(cadence)
    since = ""
    if math.isfinite(result.simulated_from):
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(result.simulated_from, UTC)
        since = f", runs from {when:%Y-%m-%d %H:%M} UTC"
    table = Table(
        title=f"{name}: {result.series} series by {by}, cadence {cadence_text}{since}",
    )
    for column in ("policy", "runs", "collisions", "deferrals", "overrun", "idle", "lateness"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for policy, m in result.policies.items():
        table.add_row(
            policy,
            str(m.runs),
            str(m.collisions),
            str(m.deferrals),
            f"{m.overrun_rate:.1%}",
            format_duration(m.idle_s_mean),
            format_duration(m.lateness_s_mean),
        )
    console = make_console()
    console.print(table)
    if result.replay is not None:
        console.print(_replayed(result.replay), markup=False, highlight=False)
