"""``planner status`` as the command line prints it: one table row per pipeline (its
leader, state, last run, next start and why), or one line when there is nothing to show.

Reads the documents of :func:`planner.service.status.pipeline_status`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["print_status", "when"]

_HINT = "start one with: planner daemon PIPELINE"


def print_status(url: str, rows: list[dict[str, Any]], now: datetime) -> None:
    """The status table of ``rows`` read from the history ``url`` at ``now``; a line with
    what to run when no daemon has scheduled anything there."""
    from rich.markup import escape
    from rich.table import Table

    from planner.display import console as make_console

    console = make_console()
    scheduled = any(row["leader"] or row["last_decision"] for row in rows)
    if rows:
        table = Table(title=escape(f"pipelines in {url}"), title_justify="left")
        for column in ("pipeline", "leader", "state", "last run", "next start"):
            table.add_column(column, no_wrap=column == "pipeline", overflow="fold")
        table.add_column("why", overflow="fold", min_width=12)
        for row in rows:
            table.add_row(
                escape(row["pipeline"]),
                escape(_leader(row["leader"])),
                _state(row),
                _last_run(row["last_run"]),
                escape(_next(row, now)),
                escape(_why(row)),
            )
        console.print(table)
    if not scheduled:
        console.print(escape(f"no daemon has scheduled anything in {url}: {_HINT}"))


def _next(row: dict[str, Any], now: datetime) -> str:
    """When the leader starts it next; nothing starts it while no daemon leads it."""
    if row["next_start"] and not (row["leader"] and row["leader"]["alive"]):
        return f"none: no daemon leads it (was {when(row['next_start'], now)})"
    return when(row["next_start"], now)


def when(iso: str | None, now: datetime) -> str:
    """``14:05:00 (in 2m 3s)`` in local time (with the day when it is not today's), or
    ``-``; a time already past reads ``(2m 3s ago)``."""
    from planner.units import format_duration

    if iso is None:
        return "-"
    moment = datetime.fromisoformat(iso)
    local, here = moment.astimezone(), now.astimezone()
    shown = local.strftime("%H:%M:%S" if local.date() == here.date() else "%a %d %b %H:%M")
    seconds = (moment - now).total_seconds()
    if seconds >= 0:
        return f"{shown} (in {format_duration(seconds)})"
    return f"{shown} ({format_duration(-seconds)} ago)"


def _leader(leader: dict[str, Any] | None) -> str:
    if leader is None:
        return "none"
    where = f"{leader['host']}:{leader['pid']}"
    return where if leader["alive"] else f"expired ({where})"


def _state(row: dict[str, Any]) -> str:
    from rich.markup import escape

    state = str(row["state"])
    if state == "running":
        return f"[yellow]running[/yellow] {escape(str(row['run_id']))}"
    if state == "deferred":
        return "[magenta]deferred[/magenta]"
    return state


def _last_run(run: dict[str, Any] | None) -> str:
    from planner.display.runs import styled
    from planner.units import format_duration

    if run is None:
        return "-"
    text = styled(run["status"])
    if run["duration_s"] is not None:
        text += f" {format_duration(run['duration_s'])}"
        if run["predicted_s"] is not None:
            text += f" vs {format_duration(run['predicted_s'])}"
    return text


def _why(row: dict[str, Any]) -> str:
    """The reason of the deferral when deferred, else of the next start."""
    decision = row["last_decision"]
    if row["state"] == "deferred" and decision is not None:
        return str(decision["reason"])
    return str(row["next_reason"] or "")
