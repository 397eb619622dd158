"""What the charts share: margins, step colors, axes, legends, the empty chart."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from planner.web.charts.svg import (
    PALETTE,
    LinearScale,
    LogScale,
    line,
    rect,
    svg_root,
    tag,
    text,
    time_labels,
    time_ticks,
)

__all__ = [
    "BAD",
    "LEFT",
    "RIGHT",
    "empty",
    "legend",
    "number",
    "step_classes",
    "swatch",
    "time_scale",
    "x_axis",
    "x_axis_time",
    "y_axis",
]

#: Statuses drawn as failures.
BAD = frozenset({"failed", "timed_out", "cancelled", "interrupted"})
#: The plot's left margin (axis labels) and right margin.
LEFT, RIGHT = 58.0, 26.0


def step_classes(steps: Iterable[str]) -> dict[str, int]:
    """Step -> color index (``step-N``), in order of first appearance, cycling past ten."""
    names = list(dict.fromkeys(steps))
    return {name: index % len(PALETTE) for index, name in enumerate(names)}


def number(value: object) -> float | None:
    """``value`` as a finite float, or None (missing, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def empty(width: float, label: str, cls: str, message: str) -> str:
    """A short chart that says ``message`` (no data yet)."""
    return svg_root(
        width, 40, label, cls, text(width / 2, 24, message, cls="empty", anchor="middle")
    )


def swatch(cls: str, fill: str = "#888") -> str:
    """A legend's color sample."""
    return rect(0, -9, 12, 10, cls=cls, fill=fill, rx=2)


def legend(items: Sequence[tuple[str, str]], width: float, top: float) -> tuple[str, float]:
    """``(shape, name)`` pairs laid out in lines across ``width`` from ``top``; returns the
    group and the height it takes."""
    parts, x, y = [], LEFT, top + 12
    for shape, name in items:
        room = 22 + 6.2 * len(name) + 14
        if x + room > width and x > LEFT:
            x, y = LEFT, y + 18
        where = f"translate({x:.0f},{y:.0f})"
        parts.append(tag("g", {"cls": "legend-item", "transform": where}, shape, text(16, 0, name)))
        x += room
    return tag("g", {"cls": "legend"}, *parts), y - top + 10


def x_axis(
    scale: LinearScale, ticks: Sequence[float], labels: Sequence[str], top: float, bottom: float
) -> str:
    """Vertical grid lines at ``ticks`` from ``top`` to ``bottom``, labelled under it."""
    grid = [line(scale(t), top, scale(t), bottom, cls="grid", stroke="#ccc") for t in ticks]
    marks = [
        text(scale(t), bottom + 14, label, cls="tick", anchor="middle")
        for t, label in zip(ticks, labels, strict=True)
    ]
    return tag("g", {"cls": "axis x"}, *grid, *marks)


def y_axis(
    scale: LinearScale | LogScale,
    ticks: Sequence[float],
    labels: Sequence[str],
    left: float,
    right: float,
) -> str:
    """Horizontal grid lines at ``ticks`` from ``left`` to ``right``, labelled left of it."""
    parts = []
    for t, label in zip(ticks, labels, strict=True):
        y = scale(t)
        parts.append(line(left, y, right, y, cls="grid", stroke="#ccc"))
        parts.append(text(left - 4, y + 4, label, cls="tick", anchor="end"))
    return tag("g", {"cls": "axis y"}, *parts)


def time_scale(
    moments: Sequence[datetime], left: float, right: float
) -> tuple[Callable[[datetime], float], list[datetime]]:
    """A scale over ``moments`` (padded a little) onto ``[left, right]``, and its ticks."""
    lo, hi = min(moments), max(moments)
    pad = max((hi - lo) * 0.05, timedelta(seconds=1))
    lo, hi = lo - pad, hi + pad
    scale = LinearScale(0.0, (hi - lo).total_seconds(), left, right)
    return (lambda t: scale((t - lo).total_seconds())), time_ticks(lo, hi)


def x_axis_time(x: Callable[[datetime], float], ticks: Sequence[datetime], bottom: float) -> str:
    """Time labels under ``bottom`` (UTC, said once at the left)."""
    marks = [
        text(x(t), bottom + 16, label, cls="tick", anchor="middle")
        for t, label in zip(ticks, time_labels(ticks), strict=True)
    ]
    return tag("g", {"cls": "axis x"}, *marks, text(LEFT, bottom + 34, "UTC", cls="tick"))
