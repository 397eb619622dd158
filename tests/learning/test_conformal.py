"""Adaptive conformal bounds hold their coverage under drift; a static one does not."""

from __future__ import annotations

import math

import numpy as np

from planner.learning.conformal import AdaptiveConformal
from planner.learning.evaluation import online_bounds


def _drifting(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stale center (log 100 s) while the real durations grow and get noisier."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    logs = np.log(100.0) + 1.5 * t / n + rng.normal(0.0, 0.2 + 0.4 * t / n)
    return np.full(n, np.log(100.0)), np.exp(logs)


def test_aci_keeps_the_overrun_near_the_target_under_drift() -> None:
    center, actual = _drifting(6000, seed=0)
    cal = np.log(actual[:500]) - center[:500]
    starts = np.arange(6000.0)
    finishes = starts + 0.5  # each finishes before the next starts

    adaptive = AdaptiveConformal(quantile=0.95, gamma=0.01, window=500).calibrate(cal)
    b = online_bounds(
        adaptive,
        center[500:],
        point_s=np.exp(center[500:]),
        started=starts[500:],
        finished=finishes[500:],
        actual=actual[500:],
    )
    overrun = float(np.mean(actual[500:] > b))
    assert abs(overrun - 0.05) < 0.015
    assert np.all(b >= np.exp(center[500:]))

    # the same calibration without online updates loses its coverage
    static = np.exp(center[500:] + np.quantile(cal, 0.95))
    assert float(np.mean(actual[500:] > static)) > 0.3


def test_alpha_below_zero_is_clamped_and_counted() -> None:
    conf = AdaptiveConformal(quantile=0.95, gamma=0.5, window=10).calibrate([0.0, 0.1, 0.2])
    for _ in range(3):
        conf.update(5.0, overran=True)  # alpha_t falls below 0
    assert conf.alpha_t_ < 0
    assert conf.offset() == 5.0  # the largest recent score, not infinity
    assert conf.clamped_ == 1
    assert math.isfinite(float(conf.bounds(np.array([0.0]), np.array([1.0]))[0]))


def test_bound_never_below_the_point_prediction() -> None:
    conf = AdaptiveConformal(quantile=0.5).calibrate([-3.0] * 20)
    bounds = conf.bounds(np.log(np.array([10.0, 20.0])), np.array([10.0, 20.0]))
    assert list(bounds) == [10.0, 20.0]


def test_updates_wait_for_the_finish() -> None:
    """A bound only uses attempts that finished before its start."""
    conf = AdaptiveConformal(quantile=0.9, gamma=0.0, window=100).calibrate([0.0] * 9)
    center = np.zeros(3)
    actual = np.array([np.e**3, 1.0, 1.0])
    # row 0 finishes after row 1 starts but before row 2 starts
    b = online_bounds(
        conf,
        center,
        point_s=np.ones(3),
        started=np.array([0.0, 1.0, 3.0]),
        finished=np.array([2.0, 1.5, 4.0]),
        actual=actual,
    )
    assert b[0] == b[1] == 1.0
    assert b[2] > 1.0  # row 0's large score arrived before row 2's start
