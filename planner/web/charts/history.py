"""A pipeline's runs over time (see :func:`history_svg`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from planner.units import format_duration
from planner.web.charts.axes import (
    BAD,
    LEFT,
    RIGHT,
    empty,
    legend,
    number,
    swatch,
    time_scale,
    x_axis_time,
    y_axis,
)
from planner.web.charts.svg import (
    LinearScale,
    circle,
    duration_label,
    duration_ticks,
    svg_root,
    tag,
    title,
    when,
)

__all__ = ["history_svg", "sparkline_svg"]

Row = Mapping[str, Any]
_TOP, _BOTTOM = 10.0, 200.0


def history_svg(
    runs: Sequence[Row],
    marks: Sequence[Row] = (),
    width: float = 960.0,
    *,
    run_href: Callable[[str], str] | None = None,
) -> str:
    """Duration per run over time: each run (``run_id``, ``started_at``, ``duration_s``,
    ``predicted_s``, ``bound_s``, ``status``; ``collision`` true when it started while
    another run of the pipeline was going) a dot on a line (hollow while running, red when
    failed, ringed on a collision), the band from each run's predicted duration to its bound
    behind them, and ``marks`` (``at``, ``kind`` such as ``deferred`` or ``collision``,
    ``reason``) as triangles on the time axis. The axis stops at twice the longest run: a
    plan far above (a first run planned without history) is clipped there, its figures in
    the dot's tooltip. ``run_href``: the link of a run's dot."""
    label = "duration per run"
    points = sorted(
        ((t, r) for r in runs if (t := when(r.get("started_at"))) is not None),
        key=lambda p: p[0],
    )
    flags = [(t, m) for m in marks if (t := when(m.get("at"))) is not None]
    if not points:
        return empty(width, label, "history", "no run yet")
    x, xticks = time_scale([t for t, _ in points] + [t for t, _ in flags], LEFT, width - RIGHT)
    took = [d for _, r in points if (d := number(r.get("duration_s"))) is not None]
    plans = [v for _, r in points for k in ("bound_s", "predicted_s") if (v := number(r.get(k)))]
    # a plan far above every duration (a first run planned without history) would flatten
    # the chart: the axis stops at twice the longest run, and what passes it is clipped
    cap = 2 * max(took) if took else max(plans, default=1.0)
    yticks = duration_ticks(min(max(took + plans, default=1.0), cap) or 1.0, most=5)
    y = LinearScale(0.0, yticks[-1], _BOTTOM, _TOP)
    top = yticks[-1]
    parts = [
        y_axis(y, yticks, [duration_label(v) for v in yticks], LEFT, width - RIGHT),
        x_axis_time(x, xticks, _BOTTOM),
    ]
    band = [
        (x(t), min(p, top), min(b, top))
        for t, r in points
        if (p := number(r.get("predicted_s"))) is not None
        and (b := number(r.get("bound_s"))) is not None
    ]
    if band:
        outline = [f"{px:.1f},{y(b):.1f}" for px, _, b in band]
        outline += [f"{px:.1f},{y(p):.1f}" for px, p, _ in reversed(band)]
        parts.append(
            tag("polygon", {"points": " ".join(outline), "cls": "band", "fill": "#cfe0f3"})
        )
        middle = " ".join(f"{px:.1f},{y(p):.1f}" for px, p, _ in band)
        parts.append(
            tag(
                "polyline",
                {"points": middle, "cls": "pred-line", "fill": "none", "stroke": "#4e79a7"},
            )
        )
    done = [(x(t), d) for t, r in points if (d := number(r.get("duration_s"))) is not None]
    if len(done) > 1:
        path = " ".join(f"{px:.1f},{y(d):.1f}" for px, d in done)
        parts.append(
            tag(
                "polyline",
                {"points": path, "cls": "duration-line", "fill": "none", "stroke": "#555"},
            )
        )
    parts += [_run_point(r, x(t), y, run_href) for t, r in points]
    parts += [_mark(t, m, x(t)) for t, m in flags]
    key, used = legend(
        [
            (swatch("swatch band", "#cfe0f3"), "predicted to bound"),
            (circle(6, -4, 3.5, cls="run ok", fill="#555", tip="run"), "run"),
            (circle(6, -4, 3.5, cls="run failed", fill="#c0392b", tip="failed run"), "failed"),
            (circle(6, -4, 4.5, cls="run collision", fill="#555", tip="collision"), "collision"),
            (tag("path", {"d": "M6,1 l-5,-9 l10,0 z", "cls": "mark deferred"}), "deferred"),
            (
                tag("path", {"d": "M6,1 l-5,-9 l10,0 z", "cls": "mark refused"}),
                "refused, collision",
            ),
        ],
        width,
        _BOTTOM + 38,
    )
    return svg_root(width, _BOTTOM + 38 + used, label, "history", *parts, key)


def _mark(at: datetime, mark: Row, px: float) -> str:
    kind = str(mark.get("kind") or "mark")
    tip = f"{kind} at {at:%Y-%m-%d %H:%M:%S} UTC"
    if mark.get("reason"):
        tip += f": {mark['reason']}"
    shape = {
        "d": f"M{px:.1f},{_BOTTOM - 1:.1f} l-5,-9 l10,0 z",
        "cls": f"mark {kind}",
        "fill": "#e0a030",
    }
    return tag("path", shape, title(tip))


def _run_point(r: Row, px: float, y: LinearScale, run_href: Callable[[str], str] | None) -> str:
    duration = number(r.get("duration_s"))
    status = str(r.get("status"))
    state = "failed" if status in BAD else ("running" if duration is None else "ok")
    collision = bool(r.get("collision"))
    tip = [f"run {r.get('run_id')}: {status}"]
    if duration is not None:
        tip.append(f"took {format_duration(duration)}")
    for key, name in (("predicted_s", "predicted"), ("bound_s", "bound")):
        if (value := number(r.get(key))) is not None:
            tip.append(f"{name} {format_duration(value)}")
    if collision:
        tip.append("collision: started while another run of the pipeline was going")
    cy = y(duration) if duration is not None else y.start
    dot = circle(
        px,
        cy,
        4.5 if collision else 3.5,
        cls=f"run {state}" + (" collision" if collision else ""),
        fill="#555",
        tip="\n".join(tip),
    )
    if run_href is None or not r.get("run_id"):
        return dot
    return tag("a", {"href": run_href(str(r["run_id"]))}, dot)


def sparkline_svg(values: Sequence[float], width: float = 110.0, height: float = 26.0) -> str:
    """A tiny line of ``values`` (oldest first) with a dot at the newest, scaled from 0 to
    their largest, for a table cell; empty text when there is nothing to draw."""
    if not values:
        return ""
    top = max(values) or 1.0
    x = LinearScale(0.0, max(len(values) - 1, 1), 3.0, width - 3.0)
    y = LinearScale(0.0, top, height - 3.0, 3.0)
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    tip = "medians, oldest first: " + ", ".join(format_duration(v) for v in values)
    attrs = {
        "xmlns": "http://www.w3.org/2000/svg",
        "viewBox": f"0 0 {width:.0f} {height:.0f}",
        "cls": "sparkline",
        "role": "img",
        "aria-label": tip,
    }
    last = len(values) - 1
    return tag(
        "svg",
        attrs,
        title(tip),
        tag("polyline", {"points": points, "cls": "spark", "fill": "none", "stroke": "#4e79a7"}),
        circle(x(last), y(values[last]), 2.5, cls="spark-end", fill="#4e79a7", tip=tip),
    )
