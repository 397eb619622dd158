"""How good the predictions are: coverage, predicted vs actual, error per step."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from planner.units import format_duration
from planner.web.charts.axes import (
    LEFT,
    RIGHT,
    empty,
    number,
    step_classes,
    time_scale,
    x_axis_time,
    y_axis,
)
from planner.web.charts.svg import (
    PALETTE,
    LinearScale,
    LogScale,
    circle,
    duration_label,
    line,
    log_ticks,
    rect,
    svg_root,
    tag,
    text,
    title,
    when,
)

__all__ = ["bars_svg", "coverage_svg", "predicted_vs_actual_svg"]

Row = Mapping[str, Any]


def coverage_svg(points: Sequence[Row], target: float, width: float = 960.0) -> str:
    """The share of tasks that ended within their bound (``at``, ``coverage`` in [0, 1],
    optional ``n``: the tasks counted) over time, against the dashed ``target`` line; a
    point under the target has the class ``below``."""
    label = "bound coverage over time"
    placed = sorted(
        (
            (t, p)
            for p in points
            if (t := when(p.get("at"))) is not None and number(p.get("coverage")) is not None
        ),
        key=lambda q: q[0],
    )
    if not placed:
        return empty(width, label, "coverage", "no coverage measured yet")
    top, bottom = 10.0, 170.0
    x, xticks = time_scale([t for t, _ in placed], LEFT, width - RIGHT)
    low = min([float(p["coverage"]) for _, p in placed] + [target])
    step = next(s for s in (0.05, 0.1, 0.2, 0.25) if (1.0 - low) / s <= 5 or s == 0.25)
    floor = max(0.0, math.floor(low / step - 1e-9) * step)
    yticks = [round(1.0 - k * step, 4) for k in range(round((1.0 - floor) / step) + 1)]
    y = LinearScale(floor, 1.0, bottom, top)
    parts = [
        y_axis(y, yticks, [f"{v:.0%}" for v in yticks], LEFT, width - RIGHT),
        x_axis_time(x, xticks, bottom),
        line(
            LEFT,
            y(target),
            width - RIGHT,
            y(target),
            cls="target",
            stroke="#59a14f",
            stroke_dasharray="6 4",
        ),
        text(
            width - RIGHT - 4,
            y(target) - 5,
            f"target {target:.0%}",
            cls="tick target-label",
            anchor="end",
        ),
    ]
    path = " ".join(f"{x(t):.1f},{y(float(p['coverage'])):.1f}" for t, p in placed)
    parts.append(
        tag(
            "polyline",
            {"points": path, "cls": "coverage-line", "fill": "none", "stroke": "#4e79a7"},
        )
    )
    for t, p in placed:
        value = float(p["coverage"])
        counted = f" of {p['n']} tasks" if p.get("n") is not None else ""
        tip = f"{t:%Y-%m-%d %H:%M} UTC: {value:.1%} within the bound{counted}"
        cls = "cov below" if value < target else "cov"
        parts.append(circle(x(t), y(value), 3.5, cls=cls, fill="#4e79a7", tip=tip))
    return svg_root(width, bottom + 40, label, "coverage", *parts)


def predicted_vs_actual_svg(points: Sequence[Row], width: float = 480.0) -> str:
    """Each task's actual duration (``actual_s``, up) against its prediction
    (``predicted_s``, across) on log axes with the dashed line y = x (above it: slower
    than predicted); colored by ``step``; class ``miss`` when past its ``bound_s``."""
    label = "predicted vs actual duration"
    usable = [
        p
        for p in points
        if (number(p.get("predicted_s")) or 0) > 0 and (number(p.get("actual_s")) or 0) > 0
    ]
    if not usable:
        return empty(width, label, "scatter", "no finished task with a prediction yet")
    values = [float(p[k]) for p in usable for k in ("predicted_s", "actual_s")]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    side = width - LEFT - RIGHT
    top = 10.0
    x, y = LogScale(lo, hi, LEFT, width - RIGHT), LogScale(lo, hi, top + side, top)
    ticks = log_ticks(lo, hi)
    labels = [duration_label(t) for t in ticks]
    parts = [y_axis(y, ticks, labels, LEFT, width - RIGHT)]
    for t, tick_label in zip(ticks, labels, strict=True):
        parts.append(line(x(t), top, x(t), top + side, cls="grid", stroke="#ccc"))
        parts.append(text(x(t), top + side + 14, tick_label, cls="tick", anchor="middle"))
    parts.append(
        line(x(lo), y(lo), x(hi), y(hi), cls="diagonal", stroke="#888", stroke_dasharray="4 3")
    )
    parts.append(text(x(hi) - 4, y(hi) + 14, "y = x", cls="tick", anchor="end"))
    parts.append(text(LEFT + side / 2, top + side + 32, "predicted →", cls="tick", anchor="middle"))
    parts.append(text(LEFT + 4, top + 12, "↑ actual", cls="tick"))
    colors = step_classes(str(p.get("step")) for p in usable)
    for p in usable:
        predicted, actual = float(p["predicted_s"]), float(p["actual_s"])
        bound = number(p.get("bound_s"))
        tip = f"{p.get('step')}: predicted {format_duration(predicted)}"
        tip += f", took {format_duration(actual)}"
        if bound is not None:
            tip += f", bound {format_duration(bound)}"
        c = colors[str(p.get("step"))]
        cls = f"point step-{c}" + (" miss" if bound is not None and actual > bound else "")
        parts.append(circle(x(predicted), y(actual), 3.5, cls=cls, fill=PALETTE[c], tip=tip))
    return svg_root(width, top + side + 40, label, "scatter", *parts)


def bars_svg(
    items: Sequence[tuple[str, float]],
    *,
    width: float = 480.0,
    label: str = "error per step",
    fmt: Callable[[float], str] = format_duration,
) -> str:
    """One horizontal bar per ``(name, value)`` from a zero line (negative values go left,
    class ``neg``), its value written beside it with ``fmt``; long names are shortened
    (the tooltip has them whole)."""
    if not items:
        return empty(width, label, "bars", "nothing to show yet")
    left = min(12 + 6.4 * max(len(name) for name, _ in items), width * 0.4)
    lo = min(0.0, *(v for _, v in items))
    hi = max(0.0, *(v for _, v in items)) or 1.0
    x = LinearScale(lo, hi, left, width - 72)
    pitch = 22.0
    height = pitch * len(items) + 12
    rows = []
    for k, (name, value) in enumerate(items):
        top = 6 + k * pitch
        x0, x1 = sorted((x(0.0), x(value)))
        shown = name if 6.4 * len(name) + 12 <= left else name[: int((left - 20) / 6.4)] + "…"
        bar = rect(
            x0,
            top + 3,
            max(x1 - x0, 1.0),
            14,
            cls="value-bar" + (" neg" if value < 0 else ""),
            fill="#4e79a7",
            data_value=f"{value:.6g}",
        )
        rows.append(
            tag(
                "g",
                {"cls": "bar-row"},
                title(f"{name}: {fmt(value)}"),
                text(left - 6, top + 14, shown, cls="tick", anchor="end"),
                bar,
                text(x1 + 4, top + 14, fmt(value), cls="tick value"),
            )
        )
    zero = line(x(0.0), 4, x(0.0), height - 4, cls="zero", stroke="#888")
    return svg_root(width, height, label, "bars", *rows, zero)
