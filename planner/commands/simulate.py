"""``planner simulate --pipeline P``: replay recorded durations through schedule policies.

The history's attempts become recurring series (``--by run|step|account|step,account``)
replayed at a cadence (``--cadence 24h``, ``auto`` = each series' median gap, ``0`` = back
to back) under four policies: fixed, average of the last 10 x 1.2, planner's calibrated
bound, and the oracle. See :mod:`planner.planning.simulate` for the exact rules.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from planner.commands.common import add_db_option, add_json_option, print_json
from planner.errors import UsageError

__all__ = ["register"]

_FILE_SUFFIXES = (".yaml", ".yml", ".json", ".toml")


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
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.history import HistoryStore, history_url
    from planner.planning.simulate import series_from_frame, simulate, simulation_to_json

    name, state_dir, file_cadence, file_quantile = _target(args.pipeline)
    cadence = _cadence(args.cadence, file_cadence)
    quantile = args.quantile if args.quantile is not None else file_quantile
    if not 0 < quantile < 1:
        raise UsageError("--quantile", f"must be between 0 and 1, got {quantile:g}")
    url = history_url(args.db, state_dir)
    with HistoryStore(url) as store:
        frame = store.attempts_frame(pipeline=name)
    series = series_from_frame(frame, args.by)
    if not series:
        raise UsageError("--pipeline", f"no finished attempts of pipeline {name!r} in {url}")
    result = simulate(series, cadence, quantile=quantile)
    if args.json:
        print_json(simulation_to_json(result))
        return 0
    _print_result(name, args.by, cadence, result)
    return 0


def _target(value: str) -> tuple[str, Path | None, float | None, float]:
    """Name, state dir, cadence and quantile of ``--pipeline`` (a name or a file)."""
    if value.lower().endswith(_FILE_SUFFIXES) and Path(value).is_file():
        from planner.config import load_pipeline

        pipeline = load_pipeline(value)
        schedule = pipeline.schedule
        return pipeline.name, pipeline.state_dir, schedule.cadence, schedule.quantile
    return value, None, None, 0.95


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
    from rich.console import Console
    from rich.table import Table

    from planner.units import format_duration

    if isinstance(cadence, str):
        cadence_text = "auto (median gap of each series)"
    elif cadence == 0:
        cadence_text = "0 (back to back)"
    else:
        cadence_text = format_duration(cadence)
    table = Table(
        title=f"{name}: {result.series} series by {by}, cadence {cadence_text}",
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
    Console().print(table)
