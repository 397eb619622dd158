"""The contention arithmetic (pure): the USL stretch, its peak and knee, and the plan that
uses them (what-if, ``auto`` within the knee, the JSON, the adaptive start)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from planner.config import Pipeline, parse_pipeline, select_steps
from planner.planning.concurrency import choose_concurrency, makespan_at
from planner.planning.contention import (
    MIN_GAIN,
    USL,
    StepContention,
    Stretched,
    contention_json,
    dominant_knee,
    evidence_note,
    reference_stretch,
)
from planner.planning.model import TaskEstimate
from planner.planning.plan import build_plan, plan_to_json, task_queries

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def test_stretch_throughput_and_peak() -> None:
    usl = USL(0.1, 0.01)
    assert usl.stretch(1) == 1.0
    assert usl.stretch(4) == pytest.approx(1 + 0.1 * 3 + 0.01 * 12)
    assert usl.stretch(0) == 1.0  # never below one task at a time
    assert usl.throughput(4) == pytest.approx(4 / 1.42)
    assert usl.ratio(8, 4) == pytest.approx(usl.stretch(8) / usl.stretch(4))
    assert usl.peak == pytest.approx(math.sqrt(0.9 / 0.01))  # 9.49
    # the peak is where the throughput is highest
    assert usl.best_count() == 9
    assert usl.throughput(9) > usl.throughput(8) and usl.throughput(9) >= usl.throughput(10)


def test_peak_edge_cases() -> None:
    assert USL(0.2, 0.0).peak is None and USL(0.2, 0.0).best_count() is None  # Amdahl
    assert USL(1.5, 0.01).peak == 1.0  # contention worse than serial: one at a time
    with pytest.raises(ValueError, match=">= 0"):
        USL(-0.1, 0.0)


def test_knee_is_where_one_more_task_adds_little() -> None:
    usl = USL(0.1, 0.01)
    knee = usl.knee()
    assert knee == 7
    assert usl.throughput(knee + 1) - usl.throughput(knee) < MIN_GAIN
    assert usl.throughput(knee) - usl.throughput(knee - 1) >= MIN_GAIN
    # Amdahl keeps rising (towards 1 / sigma), the knee says where it stops paying
    amdahl = USL(0.5, 0.0)
    assert amdahl.knee() == 4  # X(5) - X(4) = 2/30 < 0.1 <= X(4) - X(3) = 0.1
    assert USL(0.0, 0.0).knee() is None  # perfect scaling: no knee
    # a strong coherency term: the peak comes before the gains get small
    steep = USL(0.0, 0.2)
    assert steep.best_count() == 2 and steep.knee() == 2


def test_describe_names_the_knee_and_the_evidence() -> None:
    found = StepContention(
        "collect", (1, 2, 4, 8), (12, 12, 12, 12), USL(0.05, 0.006), r2=0.97, reference=4
    )
    assert found.describe() == (
        "step collect gains up to about 10 at once; past that one more task adds under 10% of "
        "a task's throughput, and past 12.6 its tasks only slow down (sigma 0.05, kappa "
        "0.006; 48 attempts at concurrency 1, 2, 4, 8, R² 0.97)"
    )
    peaked = StepContention("1", (1, 4, 16), (5, 5, 5), USL(0.0, 0.2), r2=1.0)
    assert peaked.describe().startswith(
        "step 1 gains up to about 2 at once; past that its tasks only slow down"
    )
    doc = contention_json(found)
    assert doc == {
        "sigma": 0.05,
        "kappa": 0.006,
        "peak": 12.6,
        "knee": 10,
        "reference": 4,
        "levels": [1, 2, 4, 8],
        "attempts": [12, 12, 12, 12],
        "observed": [],
        "r2": 0.97,
    }


def test_too_little_evidence_says_so() -> None:
    found = StepContention("collect", (4,), (30,))
    assert found.usl is None and found.ratio(8, 4) == 1.0
    assert contention_json(found) is None
    assert evidence_note(found) == (
        "step collect: not enough history at different concurrencies to tell how it scales "
        "(seen at 1 level: 4 (30 attempts)); using the CPU rule"
    )
    why = StepContention("x", (1, 2), (3, 2), reason="no account ran at two of them")
    assert found.describe() == evidence_note(found)
    assert "(seen at 2 levels: 1 (3 attempts), 2 (2 attempts); no account ran" in why.describe()


def test_stretched_durations_from_the_stretch_their_estimates_hold() -> None:
    usl = USL(0.5, 0.0)  # s(n) = (n + 1) / 2
    refs: dict[str, list[float | None]] = {"a": [usl.stretch(4), usl.stretch(1), None]}
    stretched = Stretched({"a": [10.0, 30.0, 60.0], "b": [5.0]}, refs, {"a": usl})
    at8 = stretched(8)
    # 10 s holding s(4) = 2.5 -> 10 / 2.5 x 4.5; 30 s holding s(1) -> x 4.5; a default stays
    assert list(at8["a"]) == pytest.approx([18.0, 135.0, 60.0])
    assert list(at8["b"]) == [5.0]  # no curve: as predicted
    assert stretched(8) is at8  # remembered per count
    assert list(stretched(1)["a"]) == pytest.approx([4.0, 30.0, 60.0])
    # the schedule follows: 1 slot is the sum, more slots stretch every task
    deps: dict[str, list[str]] = {"a": [], "b": ["a"]}
    assert makespan_at(deps, stretched, 1) == pytest.approx(4 + 30 + 60 + 5)
    assert makespan_at(deps, stretched, 8) == pytest.approx(135 + 5)


def test_the_stretch_an_estimate_holds_follows_its_source() -> None:
    usl = USL(0.5, 0.0)
    found = StepContention("a", (1, 8), (9, 9), usl, reference=8, recent=(1, 1, 8, 1, 8))
    # a last-2 mean by account averages the last two runs: at 1 and 8
    assert reference_stretch(found, "last2:step,account", 8) == pytest.approx((1 + 4.5) / 2)
    assert reference_stretch(found, "last10:step,account,quantity,params", 8) == pytest.approx(
        (1 + 1 + 4.5 + 1 + 4.5) / 5
    )
    # a mean over the whole step: its latest run's tasks
    assert reference_stretch(found, "last2:step", 8) == pytest.approx(4.5)
    # the model was asked at the query's concurrency; the default holds nothing
    assert reference_stretch(found, "model", 4) == pytest.approx(2.5)
    assert reference_stretch(found, "default", 4) is None
    assert reference_stretch(StepContention("a", (1,), (9,)), "model", 4) is None


def test_auto_stays_within_the_dominant_steps_knee() -> None:
    curves = {
        "collect": StepContention("collect", (1, 2, 4), (9, 9, 9), USL(0.1, 0.01)),
        "small": StepContention("small", (1,), (9,)),
    }
    assert dominant_knee(curves, {"collect": 900.0, "small": 10.0}) == ("collect", 7)
    assert dominant_knee(curves, {"collect": 9.0, "small": 10.0}) is None  # no curve
    waiting = {"cpu_count": 2, "free_memory_mb": 8000.0, "peak_mb_per_task": 40.0}
    free = choose_concurrency("auto", cpu_per_task=0.05, **waiting)
    assert free.concurrency == 16  # 1 spare core / 0.05 = 20, within the ceiling 16
    held = choose_concurrency("auto", cpu_per_task=0.05, knee=("collect", 7), **waiting)
    assert held.concurrency == 7 and held.auto == 7 and held.contention == ("collect", 7)
    assert held.rule.endswith("step collect stops gaining past 7 at once (its contention) -> 7")
    fixed = choose_concurrency(12, cpu_per_task=0.05, knee=("collect", 7), **waiting)
    assert fixed.concurrency == 12 and fixed.auto == 7  # a fixed count is kept


def _pipeline(setting: int | str = "auto") -> Pipeline:
    raw: dict[str, Any] = {
        "name": "crawl",
        "accounts": [f"a{i:02d}" for i in range(24)],
        "schedule": {"cadence": "24h"},
        "concurrency": {"max": setting},
        "steps": [
            {"id": "collect", "command": ["c"], "per_account": True},
            {"id": "report", "command": ["r"], "depends_on": ["collect"]},
        ],
    }
    pipeline, issues = parse_pipeline(raw, base_dir=Path("."))
    assert not issues and pipeline is not None
    return pipeline


def _plan(
    contention: dict[str, StepContention] | None, setting: int | str = "auto", at: int = 4
) -> Any:
    pipeline = _pipeline(setting)
    steps = select_steps(pipeline)
    queries = task_queries(pipeline, steps, concurrency=2, step_concurrency={"collect": at})
    estimates = [
        TaskEstimate(100.0, 120.0, "last2:step,account", 50.0, 0.05)
        if q.account
        else TaskEstimate(10.0, 12.0, "last2:step", 50.0, 0.05)
        for q in queries
    ]
    return build_plan(
        pipeline,
        steps,
        queries,
        estimates,
        past_runs=[],
        now=NOW,
        cpu_count=2,
        free_memory_mb=8000.0,
        contention=contention,
    )


CURVES = {
    "collect": StepContention(
        "collect", (1, 2, 4, 8), (24, 24, 24, 24), USL(0.1, 0.01), r2=0.99, reference=4
    ),
    "report": StepContention("report", (2,), (5,)),
}


def test_plan_stretches_its_tasks_and_its_what_if() -> None:
    plain = _plan(None)
    assert plain.concurrency == 16 and plain.contention == {} and plain.contention_notes == ()
    assert all(w.flat_makespan_s is None for w in plain.what_if)

    plan = _plan(CURVES)
    usl = CURVES["collect"].usl
    assert usl is not None
    # auto stops at collect's knee (7) instead of the CPU fit's 16
    assert plan.concurrency == 7 and plan.adaptive_start == 7
    assert "step collect stops gaining past 7 at once" in plan.concurrency_rule
    # every collect task was asked at 4: at 7 it takes 100 x s(7) / s(4)
    collect = [t for t in plan.tasks if t.step == "collect"]
    assert collect[0].predicted_s == pytest.approx(100 * usl.ratio(7, 4))
    assert collect[0].bound_s == pytest.approx(120 * usl.ratio(7, 4))
    report = next(t for t in plan.tasks if t.step == "report")
    assert report.predicted_s == 10.0  # no curve: as predicted
    # the what-if: each row is the schedule of the stretched tasks at its count
    for w in plan.what_if:
        per_task = 100 * usl.ratio(w.concurrency, 4)
        waves = math.ceil(24 / w.concurrency)
        assert w.makespan_s == pytest.approx(waves * per_task + 10.0)
        assert w.flat_makespan_s == pytest.approx(waves * 100.0 + 10.0)
    # report has one level: no ceiling hint (a step without a curve may gain further)
    assert plan.adaptive_ceiling is None
    assert plan.contention_notes == (
        "step report: not enough history at different concurrencies to tell how it scales "
        "(seen at 1 level: 2 (5 attempts)); using the CPU rule",
    )
    rec = next(r for r in plan.recommendations if r.kind == "contention")
    assert rec.text.startswith("step collect gains up to about 7 at once")
    assert rec.numbers["knee"] == 7 and rec.numbers["peak"] == 9.5


def test_plan_json_carries_the_curves_as_the_text_prints_them() -> None:
    plan = _plan(CURVES, setting=12)
    assert plan.concurrency == 12 and plan.adaptive_start == 7
    doc = plan_to_json(plan)
    assert doc["contention"]["report"] is None
    curve = doc["contention"]["collect"]
    assert curve["sigma"] == 0.1 and curve["kappa"] == 0.01 and curve["knee"] == 7
    assert curve["peak"] == 9.5 and curve["levels"] == [1, 2, 4, 8] and curve["r2"] == 0.99
    assert doc["contention_warnings"] == list(plan.contention_notes)
    assert doc["adaptive"] == {"start": 7, "ceiling": None}
    row = next(w for w in doc["what_if"] if w["concurrency"] == 12)
    assert row["makespan_s"] > row["without_contention_s"]
    rec = next(r for r in doc["recommendations"] if r["kind"] == "contention")
    assert f"sigma {curve['sigma']:.3g}, kappa {curve['kappa']:.3g}" in rec["text"]
    assert f"past {curve['peak']:.1f} its tasks only slow down" in rec["text"]
    assert rec["knee"] == curve["knee"] and rec["kappa"] == curve["kappa"]


def test_adaptive_ceiling_when_every_step_has_a_peak() -> None:
    both = {
        **CURVES,
        "report": StepContention("report", (1, 2, 4), (9, 9, 9), USL(0.0, 0.05), reference=2),
    }
    plan = _plan(both)
    # collect peaks at 9 (sqrt(0.9 / 0.01) = 9.5: X(9) > X(10)), report at 4 or 5
    assert plan.adaptive_ceiling == 9
