"""A run and its attempts as the command line prints them (``planner show``, and the
failed attempts after ``planner run --quiet``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["print_show", "styled"]


def styled(status: str) -> str:
    colour = {
        "succeeded": "green",
        "failed": "red",
        "timed_out": "red",
        "running": "yellow",
        "cancelled": "magenta",
        "abandoned": "magenta",
        "interrupted": "magenta",
        "skipped": "dim",
    }.get(status)
    return f"[{colour}]{status}[/{colour}]" if colour else status


def print_show(document: dict[str, Any], *, failures_only: bool = False) -> None:
    """A run and its attempts as a table, then the stderr tail of each failed attempt.

    ``failures_only``: list only the attempts that did not succeed (after a run)."""
    from rich.markup import escape
    from rich.table import Table

    from planner.display import console as make_console
    from planner.units import format_duration

    run = document["run"]
    console = make_console()
    duration = run["duration_s"]
    tasks = ", ".join(f"{k} {v}" for k, v in run["tasks"].items())
    versus = ""
    if run.get("predicted_s") is not None:
        versus = (
            f" against predicted {format_duration(run['predicted_s'])}"
            f" (bound {format_duration(run['bound_s'])})"
        )
    attempts = document["attempts"]
    if failures_only:  # after a run, whose summary line follows
        attempts = [a for a in attempts if a["status"] != "succeeded"]
        if not attempts:
            return
    else:
        console.print(
            f"run [bold]{run['run_id']}[/bold] of {escape(run['pipeline'])}: "
            f"{styled(run['status'])}, "
            f"{format_duration(duration) if duration is not None else 'running'}{versus}, "
            f"concurrency {run.get('concurrency') or '?'} ({tasks})"
            + (f"; {escape(run['note'])}" if run.get("note") else "")
        )
        _print_limits(console, run.get("limit_changes") or [])
    table = Table()
    for column in ("step", "account", "try", "status", "started", "duration", "exit"):
        table.add_column(column, no_wrap=column in ("status", "started", "duration"))
    for column in ("class", "peak MB", "cpu s"):
        table.add_column(column, justify="right")
    with_notes = any(a.get("note") for a in attempts)
    if with_notes:
        table.add_column("note")
    for a in attempts:
        cells = [
            escape(a["step"]),
            escape(a["account"] or ""),
            str(a["attempt"]),
            styled(a["status"]),
            (a["started_at"] or "")[11:19],
            format_duration(a["duration_s"]) if a["duration_s"] is not None else "",
            "" if a["exit_code"] is None else str(a["exit_code"]),
            escape(a["error_class"] or ""),
            "" if a["peak_rss_mb"] is None else f"{a['peak_rss_mb']:.1f}",
            "" if a["cpu_s"] is None else f"{a['cpu_s']:.2f}",
        ]
        if with_notes:
            cells.append(escape(a.get("note") or ""))
        table.add_row(*cells)
    console.print(table)
    for a in attempts:
        tail = (a.get("stderr_tail") or "").strip()
        if tail:
            label = f"{a['step']}[{a['account']}]" if a["account"] else a["step"]
            console.print(f"[bold]{escape(label)} attempt {a['attempt']}[/bold] stderr (end):")
            lines = tail.splitlines()[-8:]
            console.print("\n".join(f"  {escape(line)}" for line in lines), highlight=False)


def _print_limits(console: Console, changes: list[dict[str, Any]]) -> None:
    """The limit's path when it changed during the run, then one line per change."""
    from rich.markup import escape

    if len(changes) < 2:
        return
    path = " -> ".join(str(c["to"]) for c in changes)
    console.print(f"concurrency limit: {path} ({len(changes) - 1} change(s))")
    for c in changes[1:]:
        at = (c["at"] or "")[11:19]
        console.print(f"  {at} {c['from']} -> {c['to']}: {escape(c['reason'])}", highlight=False)
