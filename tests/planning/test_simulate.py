"""Policy simulation: causality, oracle, fixed collisions, series from a real history."""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from planner.planning.simulate import (
    POLICIES,
    Series,
    policy_intervals,
    series_cadence,
    series_from_frame,
    simulate,
    simulation_to_json,
)


def noisy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(np.log(1000.0), 0.4, n)) * np.linspace(1.0, 2.0, n)


@pytest.mark.parametrize("policy", ["fixed", "avg10_x1.2", "planner"])
@pytest.mark.parametrize("cut", [1, 5, 30, 79])
def test_no_decision_uses_the_future(policy: str, cut: int) -> None:
    d = noisy(80)
    before = policy_intervals(d, 600.0, policy)
    changed = d.copy()
    changed[cut:] = changed[cut:] * 50.0 + 7.0
    after = policy_intervals(changed, 600.0, policy)
    # the decision at the start of run k uses runs 0 .. k-1 only
    np.testing.assert_array_equal(before[: cut + 1], after[: cut + 1])
    if policy != "fixed" and cut < len(d) - 1:  # later decisions do see the change
        assert not np.array_equal(before, after)


def test_oracle_never_collides_and_fixed_does_when_longer_than_cadence() -> None:
    d = np.array([100.0, 250.0, 90.0, 310.0, 120.0])
    result = simulate([Series("s", np.arange(5.0) * 200, d)], 200.0)
    assert result.policies["oracle"].collisions == 0
    assert result.policies["oracle"].deferrals == 0
    fixed = result.policies["fixed"]
    assert fixed.deferrals == 2  # 250 and 310 run past the 200 s cadence
    assert fixed.collisions == 2  # each one due start inside (250 < 400, 310 < 400)
    # the next start after a deferral is when the run ends: gaps max(200, d)
    assert fixed.idle_s_mean == pytest.approx(np.mean([100.0, 0.0, 110.0, 0.0]))
    assert fixed.lateness_s_mean == pytest.approx(np.mean([0.0, 50.0, 0.0, 110.0]))


def test_fixed_counts_every_due_start_of_a_long_run() -> None:
    d = np.array([1000.0, 50.0])
    result = simulate([Series("s", np.array([0.0, 1.0]), d)], 300.0, policies=["fixed"])
    assert result.policies["fixed"].collisions == 3  # due at 300, 600, 900 while running
    assert result.policies["fixed"].deferrals == 1


def test_planner_beats_avg10_on_noisy_growth() -> None:
    series = [Series(f"s{i}", np.arange(300.0), noisy(300, seed=i)) for i in range(5)]
    result = simulate(series, 0.0)
    planner, avg = result.policies["planner"], result.policies["avg10_x1.2"]
    assert planner.deferrals < avg.deferrals
    assert planner.overrun_rate < 0.1
    assert result.policies["oracle"].idle_s_mean == 0.0


def test_cadence_auto_is_median_gap() -> None:
    s = Series("s", np.array([0.0, 10.0, 30.0, 40.0]), np.ones(4))
    assert series_cadence(s, "auto") == 10.0
    assert series_cadence(s, 5.0) == 5.0


def test_json_shape() -> None:
    doc = simulation_to_json(simulate([Series("s", np.arange(3.0), np.ones(3))], 1.0))
    assert doc["series"] == 1
    assert set(doc["policies"]) == set(POLICIES)
    for metrics in doc["policies"].values():
        assert {"runs", "collisions", "deferrals", "idle_s_mean", "lateness_s_mean"} <= set(metrics)


def test_series_from_a_real_history(history: Callable[..., str]) -> None:
    from planner.history import HistoryStore

    url = history(6, scale=lambda r: 1.0 + 0.1 * r)
    with HistoryStore(url) as store:
        frame = store.attempts_frame(pipeline="nightly")
    runs = series_from_frame(frame, "run")
    assert len(runs) == 1
    # a run: collect 600 + 300 + 300 + 200, then aggregate 100, one after the other
    np.testing.assert_allclose(runs[0].durations, [1500.0 * (1 + 0.1 * r) for r in range(6)])
    np.testing.assert_allclose(np.diff(runs[0].starts), 86400.0)
    by_step = {s.name: s for s in series_from_frame(frame, "step")}
    assert set(by_step) == {"1", "2"}
    np.testing.assert_allclose(by_step["2"].durations, [100.0 * (1 + 0.1 * r) for r in range(6)])
    pairs = series_from_frame(frame, "step,account")
    assert {s.name for s in pairs} == {"1,a1", "1,a2", "1,a3", "1,a4", "2,-"}


@pytest.mark.realdata
def test_julia_jobs_back_to_back(shared_data: Path) -> None:
    """The Julia CI jobs as series, back to back: planner overruns far less than avg10."""
    import csv

    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with gzip.open(shared_data / "julia-ci-durations.csv.gz", "rt") as f:
        for row in csv.DictReader(f):
            t = datetime.strptime(row["created_at"], "%Y-%m-%d %H:%M").timestamp()
            groups[row["job"]].append((t, float(row["duration_s"])))
    series = []
    for name, rows in groups.items():
        rows.sort()
        series.append(Series(name, np.array([r[0] for r in rows]), np.array([r[1] for r in rows])))
    result = simulate(series, 0.0)
    planner, avg = result.policies["planner"], result.policies["avg10_x1.2"]
    assert planner.runs == 8640
    assert planner.overrun_rate < 0.09
    assert avg.overrun_rate > 0.1
    assert result.policies["oracle"].collisions == 0
