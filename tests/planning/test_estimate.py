"""Run estimate: critical path over the shared schedule, calibrated run bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from planner.planning.estimate import (
    FALLBACK_FACTOR,
    MIN_CALIBRATION_RUNS,
    conformal_factor,
    estimate_run,
    run_bound,
)
from planner.planning.model import PastRun

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def past(ratios: list[float], predicted: float = 100.0) -> list[PastRun]:
    return [
        PastRun(
            run_id=f"r{i}",
            started_at=T0 + timedelta(days=i),
            finished_at=T0 + timedelta(days=i, seconds=predicted * r),
            status="succeeded",
            predicted_s=predicted,
            bound_s=predicted * 2,
        )
        for i, r in enumerate(ratios)
    ]


def test_critical_path_follows_the_longest_chain() -> None:
    deps = {"1": [], "2": ["1"], "3": [], "4": ["2", "3"]}
    predicted = {"1": [100.0], "2": [50.0], "3": [30.0], "4": [10.0]}
    est, sched, _ = estimate_run(deps, predicted, predicted, 4, past=[], quantile=0.95)
    assert est.critical_path == ("1", "2", "4")
    assert est.predicted_s == 160.0
    assert est.predicted_s == sched.makespan


def test_critical_path_counts_queueing_when_steps_share_slots() -> None:
    deps = {"a": [], "b": [], "c": ["a", "b"]}
    predicted = {"a": [10.0], "b": [10.0], "c": [1.0]}
    alone, _, _ = estimate_run(deps, predicted, predicted, 2, past=[], quantile=0.9)
    shared, _, _ = estimate_run(deps, predicted, predicted, 1, past=[], quantile=0.9)
    assert alone.predicted_s == 11.0
    assert shared.predicted_s == 21.0  # a and b cannot run side by side on one slot


def test_fallback_bound_before_enough_runs() -> None:
    bound, rule, n, _ = run_bound(100.0, 110.0, past([1.0] * 3), 0.95)
    assert n == 3
    assert bound == FALLBACK_FACTOR * 100.0
    assert "fewer than 10" in rule
    bound, _, _, _ = run_bound(100.0, 180.0, [], 0.95)
    assert bound == 180.0  # the schedule of the task bounds when larger


def test_calibrated_bound_is_the_conformal_quantile_of_ratios() -> None:
    ratios = [0.9 + 0.01 * i for i in range(39)]  # 0.90 .. 1.28
    bound, rule, n, factor = run_bound(200.0, 1e9, past(ratios), 0.9)
    assert n == 39
    rank = 36  # ceil((39 + 1) * 0.9)
    assert factor == pytest.approx(sorted(ratios)[rank - 1])
    assert bound == pytest.approx(200.0 * factor)
    assert "conformal" in rule


def test_calibrated_bound_never_below_prediction() -> None:
    bound, _, _, factor = run_bound(100.0, 0.0, past([0.5] * 20), 0.95)
    assert factor == 1.0
    assert bound == 100.0


def test_conformal_factor_rank_beyond_n_takes_max() -> None:
    value, exact = conformal_factor([1.0, 2.0, 3.0], 0.95)
    assert (value, exact) == (3.0, False)
    value, exact = conformal_factor([float(i) for i in range(1, 20)], 0.95)
    assert (value, exact) == (19.0, True)


def test_failed_or_unplanned_runs_do_not_calibrate() -> None:
    runs = past([1.0] * MIN_CALIBRATION_RUNS)
    runs[0] = PastRun("x", T0, T0 + timedelta(seconds=1), "failed", 100.0)
    runs[1] = PastRun("y", T0, T0 + timedelta(seconds=1), "succeeded", None)
    _, _, n, _ = run_bound(100.0, 0.0, runs, 0.95)
    assert n == MIN_CALIBRATION_RUNS - 2
