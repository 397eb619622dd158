"""The dashboard's SVG charts (planner.web.charts): parsed as XML, counted and measured."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from planner.units import format_duration
from planner.web.charts import (
    bars_svg,
    coverage_svg,
    gantt_svg,
    history_svg,
    predicted_vs_actual_svg,
    sparkline_svg,
)
from planner.web.charts.svg import duration_ticks, esc, log_ticks, time_labels, time_ticks

NS = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def classed(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    """Elements ``tag`` whose class list holds ``cls``."""
    return [e for e in root.iter(NS + tag) if cls in (e.get("class") or "").split()]


def plotted(root: ET.Element) -> ET.Element:
    """The group of a Gantt chart's bars (the legend's samples left out)."""
    group = root.find(f".//{NS}g[@class='bars']")
    assert group is not None
    return group


def row(step: str, start: float, end: float, slot: int, **extra: Any) -> dict[str, Any]:
    base = {
        "step": step,
        "account": extra.pop("account", None),
        "attempt": 1,
        "status": "succeeded",
        "start_s": start,
        "end_s": end,
        "slot": slot,
        "predicted_s": None,
        "bound_s": None,
        "estimate": "model",
        "late": False,
    }
    return base | extra


def box(rect: ET.Element) -> tuple[float, float]:
    x = float(rect.get("x", "0"))
    return x, x + float(rect.get("width", "0"))


# -- the Gantt chart ---------------------------------------------------------------------

ROWS = [
    row("extract", 0, 10, 0, account="a1", predicted_s=8.0, bound_s=12.0),
    row("extract", 0, 4, 1, account="a2", predicted_s=8.0, bound_s=12.0),
    row("load", 4, 9, 1, account="a2", status="failed", predicted_s=3.0, bound_s=4.0, late=True),
    row("load", 10, 13, 0, account="a2", attempt=2, predicted_s=3.0, bound_s=4.0),
    row("report", 13, 15, 0, status="running"),
]


def test_a_gantt_has_one_bar_per_attempt_with_its_tooltip() -> None:
    root = parse(gantt_svg(ROWS))
    bars = classed(root, "rect", "bar")
    assert len(bars) == len(ROWS)
    tasks = classed(root, "g", "task")
    assert len(tasks) == len(ROWS)
    titles = [t.findtext(NS + "title") or "" for t in tasks]
    assert titles[2].startswith("load · a2 · attempt 1 · slot 2")
    assert "predicted 3.0s" in titles[2] and "bound 4.0s" in titles[2] and "late" in titles[2]
    assert root.get("role") == "img" and root.findtext(NS + "title") == "attempts by slot"


def test_gantt_bars_of_one_slot_never_overlap_and_sit_in_their_lane() -> None:
    root = parse(gantt_svg(ROWS))
    by_slot: dict[int, list[tuple[float, float]]] = {}
    ys: dict[int, set[str | None]] = {}
    for bar in classed(root, "rect", "bar"):
        slot = int(bar.get("data-slot", "-1"))
        by_slot.setdefault(slot, []).append(box(bar))
        ys.setdefault(slot, set()).add(bar.get("y"))
    assert sorted(by_slot) == [0, 1]
    for spans in by_slot.values():
        spans.sort()
        assert all(a[1] <= b[0] + 0.11 for a, b in itertools.pairwise(spans))
    assert all(len(v) == 1 for v in ys.values())  # one y per slot
    assert ys[0] != ys[1]


def test_gantt_classes_mark_late_failed_retried_and_running_bars() -> None:
    svg = parse(gantt_svg(ROWS, uid="g1"))
    root = plotted(svg)
    bars = classed(root, "rect", "bar")
    late = classed(root, "rect", "late")
    assert [b.get("data-step") for b in late] == ["load"]
    (failed,) = classed(root, "rect", "failed")
    assert failed.get("fill") == "url(#g1-hatch)"
    assert svg.find(f".//{NS}pattern[@id='g1-hatch']") is not None
    (retry,) = classed(root, "rect", "retry")
    assert retry.get("data-attempt") == "2"
    (link,) = classed(svg, "path", "retry-link")  # from attempt 1's end to attempt 2's start
    start = re.match(r"M([\d.]+),[\d.]+ L([\d.]+),", link.get("d", ""))
    assert start is not None
    assert float(start.group(1)) == pytest.approx(box(failed)[1], abs=0.1)
    assert float(start.group(2)) == pytest.approx(box(retry)[0], abs=0.1)
    assert len(classed(root, "rect", "running")) == 1
    # same step, same color class; steps in order of first start
    steps = {b.get("data-step"): b.get("class", "").split()[1] for b in bars}
    assert steps == {"extract": "step-0", "load": "step-1", "report": "step-2"}


def test_gantt_markers_stand_at_the_predicted_length_and_bound() -> None:
    svg = gantt_svg([row("s", 2, 10, 0, predicted_s=6.0, bound_s=9.0)], width=1000)
    root = plotted(parse(svg))
    (bar,) = classed(root, "rect", "bar")
    (pred,) = classed(root, "line", "pred")
    (bound,) = classed(root, "line", "bound")
    x0, x1 = box(bar)
    per_second = (x1 - x0) / 8.0
    assert float(pred.get("x1", "0")) == pytest.approx(x0 + 6 * per_second, abs=0.2)
    assert float(bound.get("x1", "0")) == pytest.approx(x0 + 9 * per_second, abs=0.2)
    # the bound tick is taller than the bar, the prediction line inside it
    y, height = float(bar.get("y", "0")), float(bar.get("height", "0"))
    assert float(bound.get("y1", "0")) < y < y + height < float(bound.get("y2", "0"))
    assert y < float(pred.get("y1", "0")) < float(pred.get("y2", "0")) < y + height


def test_a_task_planned_at_the_default_has_no_markers_and_far_plans_do_not_squash() -> None:
    rows = [row("s", 0, 0.5, 0, predicted_s=60.0, bound_s=60.0, estimate="default")]
    rows.append(row("t", 0.5, 1.0, 0, predicted_s=30.0, bound_s=40.0))  # far past the bars
    svg = parse(gantt_svg(rows))
    root = plotted(svg)
    assert classed(root, "line", "pred") == classed(root, "line", "bound") == []
    ticks = [t.text for t in classed(svg, "text", "tick") if t.text and t.text[0].isdigit()]
    assert ticks[-1] == "1.0s"  # the axis follows the bars, not plans 30 times longer
    first, second = (t.findtext(NS + "title") or "" for t in classed(root, "g", "task"))
    assert "no history: planned at the default estimate" in first
    assert "predicted 30.0s" in second  # the tooltip still tells


def test_gantt_text_from_user_files_is_escaped() -> None:
    nasty = '<script>alert("x")</script>&'
    root = parse(gantt_svg([row(nasty, 0, 5, 0, account="a'1")]))
    (task,) = classed(root, "g", "task")
    assert (task.findtext(NS + "title") or "").startswith(f"{nasty} · a'1")
    assert not list(root.iter("script")) and not list(root.iter(NS + "script"))
    assert "<script>" not in gantt_svg([row(nasty, 0, 5, 0)])
    assert esc('"<&>') == "&quot;&lt;&amp;&gt;"


def test_an_empty_gantt_says_so() -> None:
    root = parse(gantt_svg([]))
    assert classed(root, "text", "empty")[0].text == "no attempt yet"


# -- history, coverage, scatter, bars ----------------------------------------------------


def run_doc(k: int, duration: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": f"r{k}",
        "started_at": (T0 + timedelta(hours=k)).isoformat(),
        "duration_s": duration,
        "predicted_s": 100.0,
        "bound_s": 130.0,
        "status": "succeeded",
    } | extra


def test_history_draws_a_dot_per_run_the_band_and_the_marks() -> None:
    runs = [run_doc(k, 90.0 + 10 * k) for k in range(4)]
    runs[1] |= {"collision": True}
    runs[2] |= {"status": "failed"}
    runs.append(run_doc(4, None, status="running"))
    marks = [{"at": (T0 + timedelta(hours=2.5)).isoformat(), "kind": "deferred", "reason": "busy"}]
    root = parse(history_svg(runs, marks, run_href=lambda r: f"/runs/{r}"))
    dots = [c for c in classed(root, "circle", "run") if c.findtext(NS + "title") != "run"]
    legend = {"run", "failed run", "collision"}
    dots = [c for c in dots if c.findtext(NS + "title") not in legend]
    assert len(dots) == 5
    xs = [float(c.get("cx", "0")) for c in dots]
    assert xs == sorted(xs)  # over time
    ys = [float(c.get("cy", "0")) for c in dots[:4]]
    assert ys == sorted(ys, reverse=True)  # longer runs higher up
    assert len([c for c in dots if "collision" in (c.get("class") or "")]) == 1
    assert len([c for c in dots if "failed" in (c.get("class") or "")]) == 1
    assert len([c for c in dots if "running" in (c.get("class") or "")]) == 1
    links = [a.get("href") for a in root.iter(NS + "a")]
    assert links == [f"/runs/r{k}" for k in range(5)]
    (band,) = classed(root, "polygon", "band")
    assert len((band.get("points") or "").split()) == 10  # up along bounds, back along predictions
    (mark,) = [m for m in classed(root, "path", "mark") if m.find(NS + "title") is not None]
    assert "busy" in (mark.findtext(NS + "title") or "")


def test_history_clips_a_plan_far_above_every_run() -> None:
    runs = [run_doc(0, 1.0, predicted_s=300.0, bound_s=375.0), run_doc(1, 1.2)]
    root = parse(history_svg(runs))
    axis = root.find(f".//{NS}g[@class='axis y']")
    assert axis is not None
    ticks = [t.text for t in classed(axis, "text", "tick")]
    assert ticks[-1] == format_duration(2.5)  # the top tick: twice the longest run, rounded
    (band,) = classed(root, "polygon", "band")
    top = min(float(p.split(",")[1]) for p in (band.get("points") or "").split())
    assert top >= 10.0  # clipped at the plot's top
    assert history_svg([]).count("no run yet") == 1


def test_coverage_marks_points_under_the_target() -> None:
    points = [
        {"at": (T0 + timedelta(days=k)).isoformat(), "coverage": c, "n": 10}
        for k, c in enumerate((1.0, 0.8, 0.97, 0.9))
    ]
    root = parse(coverage_svg(points, 0.95))
    dots = classed(root, "circle", "cov")
    assert len(dots) == 4
    assert [("below" in (d.get("class") or "")) for d in dots] == [False, True, False, True]
    (target,) = classed(root, "line", "target")
    ty = float(target.get("y1", "0"))
    cy = [float(d.get("cy", "0")) for d in dots]
    assert cy[0] < ty < cy[1]  # 100% above the line, 80% under it
    assert "95%" in (classed(root, "text", "target-label")[0].text or "")


def test_predicted_vs_actual_is_log_log_around_y_equals_x() -> None:
    points = [
        {"step": "a", "predicted_s": 10.0, "actual_s": 10.0, "bound_s": 12.0},
        {"step": "a", "predicted_s": 1.0, "actual_s": 100.0, "bound_s": 2.0},
        {"step": "b", "predicted_s": 100.0, "actual_s": 1.0, "bound_s": 150.0},
        {"step": "b", "predicted_s": 0.0, "actual_s": 5.0},  # no prediction: left out
    ]
    root = parse(predicted_vs_actual_svg(points, width=500))
    dots = classed(root, "circle", "point")
    assert len(dots) == 3
    (diag,) = classed(root, "line", "diagonal")
    x1, y1, x2, y2 = (float(diag.get(k, "0")) for k in ("x1", "y1", "x2", "y2"))
    assert x2 - x1 == pytest.approx(y1 - y2, abs=0.2)  # 45 degrees: the same scale both ways
    on = dots[0]  # actual == predicted: on the line
    cx, cy = float(on.get("cx", "0")), float(on.get("cy", "0"))
    assert cy == pytest.approx(y1 + (cx - x1) * (y2 - y1) / (x2 - x1), abs=0.2)
    # log scale: 1s -> 10s -> 100s are equally spaced
    xs = sorted(float(d.get("cx", "0")) for d in dots)
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.2)
    assert ["miss" in (d.get("class") or "") for d in dots] == [False, True, False]


def test_bars_are_proportional_and_negative_ones_go_left() -> None:
    root = parse(bars_svg([("a", 0.2), ("b", 0.1), ("c", -0.1)], fmt=lambda v: f"{v:.0%}"))
    bars = classed(root, "rect", "value-bar")
    widths = [float(b.get("width", "0")) for b in bars]
    assert widths[0] == pytest.approx(2 * widths[1], rel=0.02)
    assert widths[2] == pytest.approx(widths[1], rel=0.02)
    assert "neg" in (bars[2].get("class") or "")
    assert box(bars[2])[1] == pytest.approx(box(bars[0])[0], abs=0.11)  # both meet at zero
    values = [t.text for t in classed(root, "text", "value")]
    assert values == ["20%", "10%", "-10%"]


def test_sparkline_and_ticks() -> None:
    spark = parse(sparkline_svg([1.0, 2.0, 4.0]))
    (line,) = classed(spark, "polyline", "spark")
    assert len((line.get("points") or "").split()) == 3
    assert sparkline_svg([]) == ""
    assert duration_ticks(14) == [0, 5, 10, 15]
    assert duration_ticks(7200) == [0, 1800, 3600, 5400, 7200]
    assert log_ticks(0.5, 2000) == [1.0, 10.0, 100.0, 1000.0]
    assert log_ticks(3, 30) == [5, 10, 20]
    ticks = time_ticks(T0, T0 + timedelta(hours=5))
    assert ticks[0] == T0 and all(t.minute == 0 for t in ticks)
    assert time_labels(ticks)[:2] == ["12:00", "13:00"]
