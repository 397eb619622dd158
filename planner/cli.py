"""The command line: builds the parser, dispatches, maps errors to exit codes.

Exit codes: 0 success; 1 the run ended with failed tasks; 2 bad input; 3 another run of
the pipeline is active. Errors are one line each: ``planner: error: <where>: <what>``.

Each command lives in :mod:`planner.commands` as a module with ``register(subparsers)``;
it is imported when the parser is built, so command modules import heavy libraries
(pandas, scikit-learn) inside their functions, never at module level.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from planner import __version__
from planner.errors import PlannerError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Command modules under planner.commands, in the order ``--help`` lists them.
COMMANDS = (
    "validate",
    "run",
    "daemon",
    "runs",
    "status",
    "report",
    "dashboard",
    "demo",
    "importing",
    "train",
    "models",
    "plan",
    "simulate",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in planner's one-line form, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"planner: error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every available command."""
    parser = _Parser(
        prog="planner",
        description="Run recurring batch pipelines safely and learn how long they take.",
    )
    parser.add_argument("--version", action="version", version=f"planner {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"planner.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
        return code
    except PlannerError as exc:
        if args.debug:
            raise
        for line in exc.lines():
            print(f"planner: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("planner: error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
