"""``planner models [--pipeline P] [--models DIR] [--verify [--db URL]] [--json]``: the trained
models and which is live.

``--json`` prints ``{"root": DIR, "models": [card + "pipeline", "id", "current"]}``,
oldest first per pipeline; a model whose card cannot be read carries ``"error"``.
``--verify`` runs every check loading makes, against the history (``--db``, else
``$PLANNER_DB``, else the state dir's file; a pipeline file as ``P`` gives its own
history): the file's sha256 must equal the card's AND the digest recorded in the history
when it was trained, and the library versions must match. It adds ``"history"`` (the
URL, password hidden) to the document and ``"verified"`` (bool: the model is trusted and
would be loaded) and ``"problem"`` (the reason, or null) to each model; the table says
which models are trusted. Listing alone does not open the history.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from planner.commands.common import add_db_option, add_json_option, add_models_option, print_json

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "models",
        help="list the trained models and the live one",
        description="List the models in the registry, with their training data and scores.",
    )
    parser.add_argument(
        "--pipeline",
        metavar="P",
        help="only this pipeline's models (a name, or a pipeline file: then its history)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also check each file against its card and the digest recorded in the history "
        "(what loading checks); says which models are trusted; adds 'verified' and 'problem'",
    )
    add_db_option(parser)
    add_models_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.service import Instance, history_exists, resolve_target
    from planner.service.training import list_models

    target = resolve_target(args.pipeline, db=args.db, models=args.models)
    root = target.models_dir
    history: str | None = None
    if not args.verify:
        entries = list_models(None, target.models_dir, target.name)
    elif not history_exists(target.db_url):  # checking must not create a history
        history = target.db_url
        entries = list_models(None, target.models_dir, target.name)
        for entry in entries:
            entry.update(verified=False, problem=f"no history at {history} to check against")
    else:
        with Instance.open(target) as instance:
            history = instance.url
            entries = list_models(instance, target.models_dir, target.name, verify=True)
    if args.json:
        document: dict[str, Any] = {"root": str(root), "models": entries}
        if history is not None:
            document["history"] = history
        print_json(document)
        return 0
    _print_table(str(root), entries, history=history)
    return 0


def _print_table(root: str, entries: list[dict[str, Any]], *, history: str | None) -> None:
    from rich.table import Table

    from planner.display import console as make_console

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
            check = ["trusted" if entry["verified"] else f"[red]{entry['problem']}[/]"]
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
    if history is not None:
        trusted = sum(1 for entry in entries if entry.get("verified"))
        console.print(
            f"{trusted} of {len(entries)} models trusted: digest recorded in the history {history}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )


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
    """A duration as the rest of the CLI shows it (``412ms``, ``1m 5s``)."""
    from planner.units import format_duration

    if not isinstance(value, int | float) or math.isnan(value):
        return ""
    return format_duration(value)
