"""What several commands share: common options, where the history and models live, output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "add_db_option",
    "add_json_option",
    "add_models_option",
    "add_selection_options",
    "duration_type",
    "positive_int",
    "print_json",
    "split_list",
]


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout and nothing else"
    )


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        help="SQLAlchemy URL of the history (default: $PLANNER_DB, else <state_dir>/history.db)",
    )


def add_models_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        metavar="DIR",
        type=Path,
        help="model registry folder (default: $PLANNER_MODELS, else <state_dir>/models)",
    )


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--steps", type=split_list, metavar="ID,...", help="only these steps (comma-separated)"
    )
    parser.add_argument(
        "--with-deps", action="store_true", help="add the steps the selected ones depend on"
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def split_list(text: str) -> list[str]:
    """``"a, b,c"`` as ``["a", "b", "c"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def print_json(document: Any) -> None:
    """One JSON document on stdout."""
    json.dump(document, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def duration_type(*, allow_zero: bool) -> Callable[[str], float]:
    """An argparse ``type`` for a duration (``90``, ``1m30s``, ``2h``) in seconds, at
    least 0 (``allow_zero``) or longer than 0."""

    def parse(text: str) -> float:
        from planner.units import parse_duration

        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if seconds < 0 or (seconds == 0 and not allow_zero):
            least = ">= 0" if allow_zero else "longer than 0"
            raise argparse.ArgumentTypeError(f"must be {least}, got {text!r}")
        return seconds

    return parse
