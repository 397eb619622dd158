"""The report document as text: rich tables on a terminal, or markdown for a ticket.

Both forms are drawn from the same :class:`Section` values, built from the JSON document
of :func:`planner.service.report.build_report` alone, so every number printed is the
document's (durations through :func:`planner.units.format_duration`, fractions as
percentages with the document's three decimals, the rest as stored).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Section", "print_markdown", "print_plain", "sections", "title"]


@dataclass
class Section:
    """One part of the report: a table (``columns`` and ``rows`` of cells), then lines."""

    key: str
    heading: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    empty: str = "none"


def title(document: dict[str, Any]) -> str:
    """``report of P, FROM to TO (UTC)``."""
    period = document["period"]
    return (
        f"report of {document['pipeline'] or 'all pipelines'}, "
        f"{_time(period['from'])} to {_time(period['to'])} UTC"
    )


def sections(document: dict[str, Any]) -> list[Section]:
    """The report's sections, in the document's order, then its notes."""
    several = len({row["pipeline"] for row in document["steps"]}) > 1
    return [
        _current(document["current"]),
        _steps(document["steps"], several=several),
        _prediction(document["prediction"]),
        _health(document["health"]),
        _alerts(document["alerts"]),
        Section(
            "recommendations",
            "Recommendations",
            lines=[f"- {rec['text']}" for rec in document["recommendations"]],
        ),
        Section("notes", "Notes", lines=[f"- {note}" for note in document["notes"]]),
    ]


# -- the cells ------------------------------------------------------------------------------


def _time(iso: str | None) -> str:
    """``2026-05-01 12:00:03`` (the document's UTC times, to the second)."""
    return (iso or "")[:19].replace("T", " ") or "-"


def _seconds(value: float | None) -> str:
    from planner.units import format_duration

    return "-" if value is None else format_duration(value)


def _percent(value: float | None) -> str:
    """A fraction of the document (3 decimals) as a percentage with nothing lost."""
    return "-" if value is None else f"{value * 100:.1f}%"


def _task(step: str | None, account: str | None) -> str:
    if step is None:
        return "-"
    return f"{step}[{account}]" if account else step


def _current(runs: list[dict[str, Any]]) -> Section:
    section = Section("current", "Current runs", empty="no run is running")
    section.columns = ["run", "pipeline", "started", "elapsed", "tasks", "predicted", "bound"]
    section.columns += ["ETA", "late"]
    for run in runs:
        tasks = run["tasks"]
        eta = "-"
        if run["eta"] is not None:
            eta = f"{_time(run['eta'])} (in {_seconds(run['eta_in_s'])})"
        section.rows.append(
            [
                run["run_id"],
                run["pipeline"],
                _time(run["started_at"]),
                _seconds(run["elapsed_s"]),
                f"{tasks['done']} done, {tasks['running']} running of {tasks['total']}",
                _seconds(run["predicted_s"]),
                _seconds(run["bound_s"]),
                eta,
                str(len(run["late"])),
            ]
        )
        for late in run["late"]:
            section.lines.append(
                f"- run {run['run_id']}: {_task(late['step'], late['account'])} running "
                f"{_seconds(late['elapsed_s'])}, past its bound {_seconds(late['bound_s'])} "
                f"(predicted {_seconds(late['predicted_s'])})"
            )
    return section


def _steps(rows: list[dict[str, Any]], *, several: bool) -> Section:
    section = Section("steps", "Steps", empty="no attempts in the period")
    section.columns = ["pipeline"] if several else []
    section.columns += ["step", "runs", "attempts", "success", "P50", "P95", "trend"]
    for row in rows:
        trend = row["trend"]
        word = "-"
        if trend["word"] is not None:
            word = f"{trend['word']} (x{trend['ratio']:g})"
        section.rows.append(
            ([row["pipeline"]] if several else [])
            + [
                row["step"],
                str(row["runs"]),
                str(row["attempts"]),
                f"{_percent(row['success_rate'])} ({row['succeeded']}/{row['tasks']})",
                _seconds(row["p50_s"]),
                _seconds(row["p95_s"]),
                word,
            ]
        )
    return section


def _prediction(entries: list[dict[str, Any]]) -> Section:
    section = Section("prediction", "Prediction", empty="no pipeline in the period")
    section.columns = ["pipeline", "step", "runs", "tasks", "MdAPE", "within bound", "target"]
    for entry in entries:
        target = _percent(entry["target"])
        for row in [{"step": "all", **entry}, *entry["steps"]]:
            section.rows.append(
                [
                    entry["pipeline"],
                    row["step"],
                    str(row["runs"]),
                    str(row["tasks"]),
                    _percent(row["mdape"]),
                    _percent(row["coverage"]),
                    target,
                ]
            )
        section.lines.append(f"- {entry['pipeline']}: {entry['serving']}")
    return section


def _health(health: dict[str, Any]) -> Section:
    section = Section("health", "Health", empty="not measured")
    if not health:
        return section
    section.columns = ["what", "state"]
    cpu, memory, disk, database = (
        health["cpu"],
        health["memory"],
        health["disk"],
        health["database"],
    )
    load = " ".join(f"{x:.2f}" for x in cpu["load_avg"]) if cpu["load_avg"] else "-"
    free = "-" if disk["free_percent"] is None else f"{disk['free_percent']}%"
    size = database["size_bytes"]
    if size is not None:
        from planner.units import format_size

        size_text = f"{format_size(size)} ({size} bytes)"
    else:
        size_text = "unknown"
    section.rows = [
        ["CPU", f"{cpu['percent']}% busy, load {load}, {cpu['cores']} cores"],
        ["memory", f"{memory['used_percent']}% used, {memory['available_mb']} MB available"],
        ["disk", f"{disk['path']}: {disk['free_gb']} GB free ({free})"],
        ["database", f"{database['url']}: {size_text}"],
    ]
    return section


def _alerts(alerts: list[dict[str, Any]]) -> Section:
    section = Section("alerts", "Alerts", empty="no alerts in the period")
    section.columns = ["at", "level", "kind", "run", "task", "elapsed", "bound", "text"]
    section.columns.append("deliveries")
    for alert in alerts:
        deliveries = ", ".join(f"{d['sink']}: {d['status']}" for d in alert["deliveries"])
        section.rows.append(
            [
                _time(alert["at"]),
                alert["level"],
                alert["kind"],
                alert["run_id"] or "-",
                _task(alert["step"], alert["account"]),
                _seconds(alert["elapsed_s"]),
                _seconds(alert["bound_s"]),
                alert["text"],
                deliveries or "-",
            ]
        )
    return section


# -- plain ----------------------------------------------------------------------------------


def print_plain(document: dict[str, Any]) -> None:
    """Each section as a rich table (or its lines), on stdout."""
    from rich.markup import escape
    from rich.table import Table

    from planner.display import console as make_console

    console = make_console()
    console.print(f"[bold]{escape(title(document))}[/bold] ({escape(document['history'])})")
    for section in sections(document):
        if section.key == "notes" and not section.lines:
            continue
        console.print()
        console.print(f"[bold]{section.heading}[/bold]")
        if not section.rows and not section.lines:
            console.print(f"  {escape(section.empty)}")
            continue
        if section.rows:
            table = Table(show_header=True, header_style="bold")
            for column in section.columns:
                table.add_column(column, overflow="fold")
            for row in section.rows:
                table.add_row(*(escape(cell) for cell in row))
            console.print(table)
        for line in section.lines:
            console.print(escape(line), highlight=False, soft_wrap=True)


# -- markdown -------------------------------------------------------------------------------


def print_markdown(document: dict[str, Any], write: Callable[[str], None] = print) -> None:
    """The report as markdown (what a person pastes into a ticket): a title, then one
    ``##`` section each, tables as pipe tables. No terminal markup."""
    write(f"# planner {title(document)}")
    write("")
    write(f"History: `{document['history']}`")
    for section in sections(document):
        if section.key == "notes" and not section.lines:
            continue
        write("")
        write(f"## {section.heading}")
        write("")
        if not section.rows and not section.lines:
            write(f"_{section.empty}_")
            continue
        if section.rows:
            write(_md_row(section.columns))
            write(_md_row(["---"] * len(section.columns)))
            for row in section.rows:
                write(_md_row(row))
            if section.lines:
                write("")
        for line in section.lines:
            write(_md_text(line))


def _md_text(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md_text(cell) for cell in cells) + " |"
