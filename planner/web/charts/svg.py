"""The small vocabulary the dashboard's charts are drawn with: elements, scales, ticks.

Everything returns text. Every attribute value and every text node goes through
:func:`esc`, so names from pipeline files (steps, accounts, stderr) can never open a tag.
Colors are classes (``step-3``, ``late``, ``failed``, ``grid``) whose fills the dashboard's
stylesheet maps to CSS variables, with a plain color attribute as the fallback for an SVG
shown on its own.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from planner.units import format_duration

__all__ = [
    "PALETTE",
    "LinearScale",
    "LogScale",
    "circle",
    "duration_label",
    "duration_ticks",
    "esc",
    "fmt",
    "line",
    "log_ticks",
    "rect",
    "svg_root",
    "tag",
    "text",
    "time_labels",
    "time_ticks",
    "title",
    "when",
]

#: Fallback fills of ``step-0`` .. ``step-9`` (the stylesheet's ``--step-N`` in light mode).
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#ff9da7",
    "#86bcb6",
    "#bab0ac",
)

_DURATION_STEPS = (
    0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
    21600, 43200, 86400, 172800, 604800,
)  # fmt: skip


def esc(value: object) -> str:
    """``value`` as text safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def fmt(value: float) -> str:
    """A coordinate: at most one decimal, no trailing zero."""
    out = f"{value:.1f}"
    return out[:-2] if out.endswith(".0") else out


def tag(name: str, attrs: Mapping[str, object] | None = None, *children: str) -> str:
    """``<name a="v">children</name>`` (self-closed without children); attributes whose
    value is None are left out, floats are rounded, and the key ``cls`` writes ``class``."""
    parts = [name]
    for key, value in (attrs or {}).items():
        if value is None:
            continue
        shown = fmt(value) if isinstance(value, float) else str(value)
        parts.append(f'{"class" if key == "cls" else key.replace("_", "-")}="{esc(shown)}"')
    head = " ".join(parts)
    if not children:
        return f"<{head}/>"
    return f"<{head}>{''.join(children)}</{name}>"


def text(x: float, y: float, content: object, *, cls: str = "label", anchor: str = "start") -> str:
    """A text node at ``(x, y)`` (its baseline), escaped."""
    attrs: dict[str, object] = {"x": float(x), "y": float(y), "cls": cls}
    if anchor != "start":
        attrs["text_anchor"] = anchor
    return tag("text", attrs, esc(content))


def title(tip: str) -> str:
    """A tooltip: the ``<title>`` child of the shape it describes."""
    return tag("title", None, esc(tip))


def line(
    x1: float, y1: float, x2: float, y2: float, *, cls: str, stroke: str = "#888", **extra: object
) -> str:
    """A line segment of class ``cls``."""
    attrs = {"x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2)}
    return tag("line", attrs | {"cls": cls, "stroke": stroke} | extra)


def rect(x: float, y: float, w: float, h: float, *, cls: str, fill: str, **extra: object) -> str:
    """A rectangle of class ``cls``; ``extra`` attributes as in :func:`tag`."""
    attrs = {"x": float(x), "y": float(y), "width": float(w), "height": float(h)}
    return tag("rect", attrs | {"cls": cls, "fill": fill} | extra)


def circle(cx: float, cy: float, r: float, *, cls: str, fill: str, tip: str) -> str:
    """A dot of class ``cls`` with its tooltip."""
    attrs = {"cx": float(cx), "cy": float(cy), "r": float(r), "cls": cls, "fill": fill}
    return tag("circle", attrs, title(tip))


def svg_root(width: float, height: float, label: str, cls: str, *children: str) -> str:
    """The outer element: scales to its container (``viewBox``), described for screen
    readers (``role="img"`` and ``aria-label``)."""
    attrs = {
        "xmlns": "http://www.w3.org/2000/svg",
        "viewBox": f"0 0 {fmt(width)} {fmt(height)}",
        "width": fmt(width),
        "height": fmt(height),
        "role": "img",
        "aria-label": label,
        "cls": f"chart {cls}",
        "font-family": "system-ui, sans-serif",
        "font-size": "11",
    }
    return tag("svg", attrs, *children, tag("title", None, esc(label)))


@dataclass(frozen=True)
class LinearScale:
    """Maps ``[lo, hi]`` onto ``[start, end]`` (a flat domain maps to ``start``)."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        if self.hi == self.lo:
            return self.start
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)


@dataclass(frozen=True)
class LogScale:
    """Maps ``[lo, hi]`` (both > 0) onto ``[start, end]`` logarithmically."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        a, b = math.log10(self.lo), math.log10(self.hi)
        v = math.log10(max(value, self.lo * 1e-3))
        return self.start + (v - a) / (b - a) * (self.end - self.start) if b > a else self.start


def duration_ticks(hi: float, most: int = 6) -> list[float]:
    """Ticks from 0 up to at least ``hi`` seconds at a step a person reads easily
    (1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h, days)."""
    hi = max(hi, 1e-9)
    step = next((s for s in _DURATION_STEPS if hi / s <= most), None)
    if step is None:
        step = 10 ** math.ceil(math.log10(hi / most))
    count = math.ceil(hi / step - 1e-9)
    return [round(k * step, 6) for k in range(count + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten within ``[lo, hi]``, with 2 and 5 multiples when fewer than three."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    decades = [10.0**k for k in range(a, b + 1) if lo <= 10.0**k <= hi]
    if len(decades) >= 3:
        return decades
    finer = [m * 10.0**k for k in range(a, b + 1) for m in (1, 2, 5)]
    return [v for v in finer if lo <= v <= hi]


_TIME_STEPS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400,
    172800, 604800, 2592000,
)  # fmt: skip


def time_ticks(lo: datetime, hi: datetime, most: int = 6) -> list[datetime]:
    """Round instants (UTC) within ``[lo, hi]``, at most ``most`` of them."""
    span = max((hi - lo).total_seconds(), 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= most), _TIME_STEPS[-1])
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = math.ceil((lo - epoch).total_seconds() / step) * step
    out: list[datetime] = []
    at = epoch + timedelta(seconds=first)
    while at <= hi and len(out) <= most:
        out.append(at)
        at += timedelta(seconds=step)
    return out


def time_labels(ticks: Sequence[datetime]) -> list[str]:
    """Labels for :func:`time_ticks`: as short as the step allows (UTC)."""
    if not ticks:
        return []
    step = (ticks[1] - ticks[0]).total_seconds() if len(ticks) > 1 else 86400.0
    same_day = ticks[0].date() == ticks[-1].date()
    if step >= 86400:
        pattern = "%b %d"
    elif step < 60:
        pattern = "%H:%M:%S"
    else:
        pattern = "%H:%M" if same_day else "%b %d %H:%M"
    return [t.astimezone(UTC).strftime(pattern) for t in ticks]


def when(value: object) -> datetime | None:
    """An aware UTC datetime from a datetime or an ISO 8601 text (None: unknown)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def duration_label(seconds: float) -> str:
    """An axis label of ``seconds`` (``0`` for zero)."""
    return "0" if seconds == 0 else format_duration(seconds)
