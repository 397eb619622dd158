"""A run's attempts as bars on the slots they ran in (see :func:`gantt_svg`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from planner.units import format_duration
from planner.web.charts.axes import (
    BAD,
    LEFT,
    RIGHT,
    empty,
    legend,
    number,
    step_classes,
    swatch,
    x_axis,
)
from planner.web.charts.svg import (
    PALETTE,
    LinearScale,
    duration_label,
    duration_ticks,
    line,
    rect,
    svg_root,
    tag,
    text,
    title,
)

__all__ = ["gantt_svg"]

Row = Mapping[str, Any]
_LANE, _BAR, _AXIS, _TOP = 26.0, 18.0, 24.0, 6.0


def gantt_svg(
    rows: Sequence[Row], width: float = 960.0, *, span_s: float | None = None, uid: str = "gantt"
) -> str:
    """The attempts ``rows`` (``step``, ``account``, ``attempt``, ``start_s``, ``end_s``,
    ``slot``, ``status``, ``predicted_s``, ``bound_s``, ``estimate``, ``late``) as bars on
    their slots (seconds from the run's start; the axis covers ``span_s`` at least),
    colored by step: a thin dark line across a bar where its prediction ends, a taller grey
    tick at its bound (neither for a task planned at the ``default`` estimate, which had no
    history, nor past 1.5 times the longest end); late bars outlined, failed ones hatched
    red, a retry marked ``↻N`` and linked to the attempt before it by a dashed line. Each
    bar's ``<title>`` tells all of it. ``uid`` prefixes the chart's ids."""
    label = "attempts by slot"
    if not rows:
        return empty(width, label, "gantt", "no attempt yet")
    ordered = sorted(rows, key=lambda r: (float(r["start_s"]), int(r.get("slot") or 0)))
    colors = step_classes(str(r.get("step")) for r in ordered)
    slots = max(int(r.get("slot") or 0) for r in rows) + 1
    longest = max([float(r["end_s"]) for r in rows] + [span_s or 0.0])
    reach = longest
    for r in rows:
        for key in _markers(r):
            if (mark := float(r["start_s"]) + float(r[key])) <= 1.5 * longest:
                reach = max(reach, mark)
    ticks = duration_ticks(reach)
    bottom = _TOP + slots * _LANE
    frame = _Frame(LinearScale(0.0, ticks[-1] or 1.0, LEFT, width - RIGHT), colors, f"{uid}-hatch")
    bars = [frame.bar(row) for row in ordered]
    hatch = tag(
        "pattern",
        {"id": frame.hatch, "patternUnits": "userSpaceOnUse", "width": 6, "height": 6,
         "patternTransform": "rotate(45)"},
        rect(0, 0, 6, 6, cls="hatch-bg", fill="#f6c7c3"),
        line(0, 0, 0, 6, cls="hatch-line", stroke="#c0392b", stroke_width=3),
    )  # fmt: skip
    lanes = [
        tag(
            "g",
            {"cls": "lane"},
            rect(
                LEFT,
                _TOP + k * _LANE,
                width - LEFT - RIGHT,
                _LANE,
                cls=f"lane-bg lane-{k % 2}",
                fill="none",
            ),
            text(
                LEFT - 6,
                _TOP + k * _LANE + _LANE / 2 + 4,
                f"slot {k + 1}",
                cls="tick",
                anchor="end",
            ),
        )
        for k in range(slots)
    ]
    axis = x_axis(frame.x, ticks, [duration_label(t) for t in ticks], _TOP, bottom)
    items = [(swatch(f"swatch step-{c}", PALETTE[c]), name) for name, c in colors.items()]
    items += [
        (swatch("swatch failed", f"url(#{frame.hatch})"), "failed"),
        (swatch("swatch late-key", "none"), "late (past its bound)"),
        (line(6, -11, 6, 3, cls="pred", stroke="#222"), "predicted"),
        (line(6, -13, 6, 5, cls="bound", stroke="#777"), "bound"),
    ]
    if any(int(r.get("attempt") or 1) > 1 for r in rows):
        items.append((text(0, 0, "↻", cls="retry-mark"), "retry"))
    key, used = legend(items, width, bottom + _AXIS)
    links = tag("g", {"cls": "links"}, *frame.links)
    body = tag("g", {"cls": "bars"}, *bars)
    height = bottom + _AXIS + used
    return svg_root(width, height, label, "gantt", tag("defs", None, hatch), *lanes, axis, links,
                    body, key)  # fmt: skip


@dataclass
class _Frame:
    """The scale and colors of one chart, and where each attempt's bar ended (for the
    dashed line to its retry)."""

    x: LinearScale
    colors: Mapping[str, int]
    hatch: str
    links: list[str] = field(default_factory=list)
    ends: dict[tuple[object, object, int], tuple[float, float]] = field(default_factory=dict)

    def bar(self, row: Row) -> str:
        """One attempt: its bar, markers and label, in a group with its tooltip."""
        start, end = float(row["start_s"]), float(row["end_s"])
        slot, attempt = int(row.get("slot") or 0), int(row.get("attempt") or 1)
        status = str(row.get("status"))
        color = self.colors[str(row.get("step"))]
        y = _TOP + slot * _LANE + (_LANE - _BAR) / 2
        x0 = self.x(start)
        x1 = max(self.x(end), x0 + 2.0)
        flags = {
            "late": bool(row.get("late")),
            "failed": status in BAD,
            "retry": attempt > 1,
            "running": status == "running",
        }
        classes = " ".join(["bar", f"step-{color}", *(c for c, on in flags.items() if on)])
        fill = f"url(#{self.hatch})" if status in BAD else PALETTE[color]
        data = {"data_step": row.get("step"), "data_slot": slot, "data_attempt": attempt}
        parts = [
            title(_tooltip(row, slot)),
            rect(x0, y, x1 - x0, _BAR, cls=classes, fill=fill, rx=2, **data),
        ]
        shown = _markers(row)
        for key, cls, stroke, (top, below) in (
            ("predicted_s", "pred", "#222", (2.0, -2.0)),
            ("bound_s", "bound", "#777", (-3.0, 3.0)),
        ):
            at = self.x(start + float(row[key])) if key in shown else None
            if at is not None and at <= self.x.end + 0.5:
                parts.append(line(at, y + top, at, y + _BAR + below, cls=cls, stroke=stroke))
        name = str(row.get("account") or row.get("step"))
        mark = f"↻{attempt} " if attempt > 1 else ""
        if x1 - x0 > 6.2 * len(mark + name) + 8:
            parts.append(text(x0 + 4, y + _BAR - 5, mark + name, cls="bar-label"))
        elif mark and x1 - x0 > 22:
            parts.append(text(x0 + 3, y + _BAR - 5, mark.strip(), cls="bar-label"))
        before = self.ends.get((row.get("step"), row.get("account"), attempt - 1))
        if attempt > 1 and before is not None:
            path = f"M{before[0]:.1f},{before[1]:.1f} L{x0:.1f},{y + _BAR / 2:.1f}"
            attrs = {"d": path, "cls": "retry-link", "stroke": "#c0392b", "fill": "none",
                     "stroke_dasharray": "3 3"}  # fmt: skip
            self.links.append(tag("path", attrs))
        self.ends[(row.get("step"), row.get("account"), attempt)] = (x1, y + _BAR / 2)
        return tag("g", {"cls": "task"}, *parts)


def _markers(row: Row) -> tuple[str, ...]:
    """The keys of the row's prediction and bound worth drawing (none for a task planned
    at the default estimate: no history stood behind them)."""
    if row.get("estimate") == "default":
        return ()
    return tuple(k for k in ("predicted_s", "bound_s") if number(row.get(k)) is not None)


def _tooltip(row: Row, slot: int) -> str:
    who = " · ".join(str(v) for v in (row.get("step"), row.get("account")) if v is not None)
    took = float(row["end_s"]) - float(row["start_s"])
    lines = [
        f"{who} · attempt {row.get('attempt') or 1} · slot {slot + 1}",
        f"{row.get('status')}, {format_duration(took)}"
        f" (from +{format_duration(float(row['start_s']))})",
    ]
    predicted, bound = number(row.get("predicted_s")), number(row.get("bound_s"))
    if predicted is not None:
        lines.append(f"predicted {format_duration(predicted)}")
    if bound is not None:
        lines.append(f"bound {format_duration(bound)}")
    if row.get("estimate") == "default":
        lines.append("no history: planned at the default estimate")
    if row.get("late"):
        lines.append("late: ran past its bound")
    return "\n".join(lines)
