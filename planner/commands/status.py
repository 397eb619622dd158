"""``planner status [PIPELINE...] [--db URL] [--json]``: what the scheduler daemon is doing.

For each pipeline (each a name in the history or a pipeline file; none: every pipeline
the history knows): the daemon leading it, whether a run is going or the daemon deferred
it, the last run against its prediction, and the next start with the reason the daemon
gave. ``--json`` prints ``{"history", "now", "pipelines": [...]}`` with the documents of
:func:`planner.service.status.pipeline_status`. A history that does not exist is not
created: one line names it (``--json``: no pipelines), exit 0.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from planner.commands.common import add_db_option, add_json_option, print_json

if TYPE_CHECKING:
    from planner.service import Target

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "status",
        help="show what the scheduler daemon does with each pipeline",
        description="Show, for each pipeline, the daemon that schedules it, whether it is "
        "running or deferred, its last run against the prediction, and its next start "
        "with the daemon's reason.",
    )
    parser.add_argument(
        "pipelines",
        nargs="*",
        metavar="PIPELINE",
        help="a pipeline name in the history, or a pipeline file (its history is used); "
        "default: every pipeline in the history",
    )
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.clock import SYSTEM_CLOCK
    from planner.service import Instance, history_exists
    from planner.service.status import pipeline_status

    names, target = _targets(args.pipelines, args.db)
    now = SYSTEM_CLOCK.now()
    if not history_exists(target.db_url):  # reading must not create a database
        rows: list[dict[str, Any]] = []
        url = target.db_url
    else:
        with Instance.open(target, clock=SYSTEM_CLOCK) as instance:
            now = instance.clock.now()
            rows = pipeline_status(instance.store, names, now)
            url = instance.url
    if args.json:
        print_json({"history": url, "now": now.isoformat(), "pipelines": rows})
        return 0
    from planner.display.status import print_status

    print_status(url, rows, now)
    return 0


def _targets(values: list[str], db: str | None) -> tuple[list[str] | None, Target]:
    """The pipeline names and the one history they share (UsageError when files name
    different histories and no ``--db`` says which)."""
    from planner.errors import UsageError
    from planner.service import resolve_target

    if not values:
        return None, resolve_target(None, db=db)
    targets = [resolve_target(value, db=db) for value in values]
    urls = {t.db_url for t in targets}
    if len(urls) > 1:
        raise UsageError(
            " ".join(values),
            "these pipelines keep their history in different places "
            f"({', '.join(sorted(urls))}): name one with --db URL",
        )
    return [t.name for t in targets if t.name], targets[0]
