"""Recent prediction quality from the runs' own plans, and when it counts as drift."""

from __future__ import annotations

import pytest

from planner.monitoring.drift import drift_signal, prediction_quality


def _rows(ratio: float, n: int = 40) -> list[tuple[str, float, float, float]]:
    """Tasks predicted 10 s with a 13 s bound that took ``ratio`` x 10 s (+/- 1 %)."""
    return [(f"r{i % 4}", 10.0, 13.0, 10.0 * ratio * (0.99 + 0.02 * (i % 2))) for i in range(n)]


def test_quality_of_tasks_that_ran_as_predicted_is_not_drift() -> None:
    q = prediction_quality(_rows(1.0))
    assert (q.runs, q.tasks) == (4, 40)
    assert q.mdape == pytest.approx(0.01, rel=0.01) and q.coverage == 1.0
    assert drift_signal(q, target=0.95) is None


def test_durations_that_grew_past_the_bounds_are_drift() -> None:
    q = prediction_quality(_rows(1.5))
    assert q.coverage == 0.0
    signal = drift_signal(q, target=0.95)
    assert signal is not None and signal.kind == "model_drift" and signal.level == "warning"
    assert "0% of tasks finished within their bound (target 95%)" in signal.text
    assert "median error 50%" not in signal.text  # 50 % is not above the threshold
    assert signal.text.endswith("retrain with planner train")


def test_too_few_tasks_say_nothing() -> None:
    assert drift_signal(prediction_quality(_rows(3.0, n=5)), target=0.95) is None
    assert prediction_quality([]).mdape is None
