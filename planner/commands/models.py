"""``planner models [--pipeline P] [--models DIR] [--json]``: the trained models and which is live.

``--json`` prints ``{"root": DIR, "models": [card + "pipeline", "id", "current"]}``,
oldest first per pipeline; a model whose card cannot be read carries ``"error"``.
``--verify`` runs the checks loading makes (sha256, library versions) and adds
``"verified"`` (bool) and ``"problem"`` (the reason, or null) to each model.
"""

from __future__ import annotations

import argparse
from typing import Any

from planner.commands.common import add_json_option, add_models_option, models_dir, print_json

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "models",
        help="list the trained models and the live one",
        description="List the models in the registry, with their training data and scores.",
    )
    parser.add_argument("--pipeline", metavar="NAME", help="only this pipeline's models")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also check each file's sha256 and library versions against its card "
        "(what loading checks); adds 'verified' and 'problem'",
    )
    add_models_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.errors import ModelError
    from planner.learning.registry import Registry

    root = models_dir(args.models)
    registry = Registry(root)
    entries = registry.list(args.pipeline)
    if args.verify:
        for entry in entries:
            try:
                registry.verify(entry["pipeline"], entry["id"])
                entry.update(verified=True, problem=None)
            except ModelError as exc:
                entry.update(verified=False, problem=exc.what)
    if args.json:
        print_json({"root": str(root), "models": entries})
        return 0
    _print_table(str(root), entries)
    return 0


def _print_table(root: str, entries: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from planner.commands.common import console as make_console

    console = make_console()
    if not entries:
        console.print(f"no models in {root}")
        return
    from rich import box

    pipelines = sorted({entry["pipeline"] for entry in entries})
    single = len(pipelines) == 1
    title = f"models of {pipelines[0]} in {root}" if single else f"models in {root}"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    names = ["model id", "live", "kind", "rows", "trained on", "MdAPE", "MAE"]
    verified = any("verified" in entry for entry in entries)
    names = ([] if single else ["pipeline"]) + names + (["check"] if verified else [])
    for name in names:
        table.add_column(
            name,
            justify="right" if name in {"rows", "MdAPE", "MAE"} else "left",
            overflow="fold",
            no_wrap=name not in {"trained on", "check"},
        )
    for entry in entries:
        first = [] if single else [entry["pipeline"]]
        if "error" in entry:
            table.add_row(*first, entry["id"], "", f"[red]{entry['error']}[/]")
            continue
        check = []
        if verified:
            check = ["ok" if entry["verified"] else f"[red]{entry['problem']}[/]"]
        metrics = _model_metrics(entry.get("metrics"))
        table.add_row(
            *first,
            entry["id"],
            "*" if entry["current"] else "",
            str(entry.get("kind", "")),
            _rows(entry),
            _span(entry),
            _percent(metrics.get("mdape")),
            _seconds(metrics.get("mae_s")),
            *check,
        )
    console.print(table)


def _model_metrics(metrics: Any) -> dict[str, Any]:
    """The model's own holdout scores, ``metrics["model"]`` of the card."""
    inner = metrics.get("model") if isinstance(metrics, dict) else None
    return inner if isinstance(inner, dict) else {}


def _training(entry: dict[str, Any]) -> dict[str, Any]:
    training = entry.get("training")
    return training if isinstance(training, dict) else {}


def _rows(entry: dict[str, Any]) -> str:
    rows = _training(entry).get("rows")
    return f"{rows:,}" if isinstance(rows, int) else ""


def _span(entry: dict[str, Any]) -> str:
    training = _training(entry)
    if "start" in training and "end" in training:
        return f"{str(training['start'])[:10]} to {str(training['end'])[:10]}"
    return ""


def _percent(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else ""


def _seconds(value: Any) -> str:
    return f"{value:,.0f} s" if isinstance(value, int | float) else ""
