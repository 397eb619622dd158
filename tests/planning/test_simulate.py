"""Policy simulation: causality of the rules, oracle, fixed collisions, series from a real
history, the scored part, and planner's learned bounds on the Julia trace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from planner.planning.simulate import (
    POLICIES,
    Series,
    occurrence_frame,
    policy_intervals,
    series_cadence,
    series_from_frame,
    simulate,
    simulation_to_json,
    split_bounds,
    split_time,
)
from planner.service.simulation import run_simulation

RULES = ("fixed", "avg10_x1.2", "oracle")


def noisy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(np.log(1000.0), 0.4, n)) * np.linspace(1.0, 2.0, n)


@pytest.mark.parametrize("policy", ["fixed", "avg10_x1.2"])
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
    result = simulate([Series("s", np.arange(5.0) * 200, d)], 200.0, policies=RULES)
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


def test_planner_interval_is_its_bound_and_the_cadence_without_one() -> None:
    d = np.array([100.0, 200.0, 300.0])
    bounds = np.array([np.nan, 150.0, 400.0])
    got = policy_intervals(d, 120.0, "planner", bounds=bounds, min_margin=0.1)
    np.testing.assert_allclose(got, [120.0, 165.0, 440.0])
    with pytest.raises(ValueError, match="needs"):
        policy_intervals(d, 120.0, "planner")
    with pytest.raises(ValueError, match="needs bounds"):
        simulate([Series("s", np.arange(3.0), d)], 0.0)


def test_every_policy_is_scored_on_the_same_later_part() -> None:
    d = np.array([100.0, 250.0, 90.0, 310.0, 120.0, 80.0])
    s = Series("s", np.arange(6.0) * 1000, d)
    assert split_time([s], 0.5) == 3000.0  # ceil(6 x 0.5) = 3: runs 3, 4, 5 are scored
    assert split_time([s], 0.0) == -np.inf
    bounds = [np.full(6, 200.0)]
    whole = simulate([s], 200.0, bounds=bounds)
    later = simulate([s], 200.0, bounds=bounds, simulated_from=3000.0)
    assert {m.runs for m in whole.policies.values()} == {6}
    assert {m.runs for m in later.policies.values()} == {3}
    # avg10 still starts from the earlier runs: mean(100, 250, 90) x 1.2 = 176 < 310
    assert later.policies["avg10_x1.2"].deferrals == 1
    assert later.policies["planner"].deferrals == 1  # 310 > 200
    # idle of runs 3 and 4 (the last run has no next start): fixed 200 - d
    assert later.policies["fixed"].idle_s_mean == pytest.approx(np.mean([0.0, 80.0]))
    doc = simulation_to_json(later)
    assert doc["simulated_from"] == "1970-01-01T00:50:00+00:00"


def test_planner_beats_avg10_on_noisy_growth() -> None:
    """Five daily series growing 2x with noise: planner's learned bound overruns about
    5 % of the time, far less than avg10 x 1.2 (the first 30 % trains the model)."""
    series = [
        Series(f"s{i}", np.arange(300.0) * 86400.0 + 3600.0 * i, noisy(300, seed=i))
        for i in range(5)
    ]
    result = run_simulation(series, 0.0, refits=1)
    planner, avg = result.policies["planner"], result.policies["avg10_x1.2"]
    assert planner.runs == avg.runs == 5 * 210
    assert planner.deferrals < avg.deferrals
    assert 0.02 < planner.overrun_rate < 0.09
    assert result.policies["oracle"].idle_s_mean == 0.0


def test_cadence_auto_is_median_gap() -> None:
    s = Series("s", np.array([0.0, 10.0, 30.0, 40.0]), np.ones(4))
    assert series_cadence(s, "auto") == 10.0
    assert series_cadence(s, 5.0) == 5.0


def test_json_shape() -> None:
    doc = simulation_to_json(run_simulation([Series("s", np.arange(3.0), np.ones(3))], 1.0))
    assert doc["series"] == 1
    assert doc["simulated_from"] is not None
    assert set(doc["policies"]) == set(POLICIES)
    for metrics in doc["policies"].values():
        assert {"runs", "collisions", "deferrals", "idle_s_mean", "lateness_s_mean"} <= set(metrics)
        assert set(metrics) == {
            "runs",
            "collisions",
            "deferrals",
            "idle_s_mean",
            "lateness_s_mean",
            "overrun_rate",
        }
    # 3 runs of 1 s at a 1 s cadence, 30 % trains (ceil(0.9) = 1): 2 scored, none overruns
    assert doc["simulated_from"] == "1970-01-01T00:00:01+00:00"
    assert doc["policies"]["fixed"] == {
        "runs": 2,
        "collisions": 0,
        "deferrals": 0,
        "idle_s_mean": 0.0,
        "lateness_s_mean": 0.0,
        "overrun_rate": 0.0,
    }


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
    # what the model knows of each occurrence: one attempt keeps its step, account and
    # quantity; a whole run (five attempts, two steps) keeps none of them
    one = next(s for s in pairs if s.name == "1,a2")
    assert one.context is not None
    assert list(one.context["account"]) == ["a2"] * 6
    assert list(one.context["quantity"]) == [10.0] * 6
    rows = occurrence_frame([*runs, one])
    assert len(rows) == 12
    assert rows["step"].isna()[:6].all() and rows["quantity"].isna()[:6].all()
    assert (rows["finished_at"] - rows["started_at"]).dt.total_seconds().tolist()[6:] == list(
        one.durations
    )
    cut = split_bounds([*runs, one], np.arange(12.0))
    np.testing.assert_array_equal(cut[1], np.arange(6.0, 12.0))


@pytest.mark.realdata
def test_julia_jobs_back_to_back(shared_data: Path) -> None:
    """The Julia CI jobs as series, back to back: planner's learned bound holds about 5 %
    overruns, far fewer than avg10 x 1.2, on the same last 70 % of the trace."""
    from planner.learning.importers.table import parse_csv

    mapping = {"step": "job", "run_id": "build", "started_at": "created_at"}
    frame = parse_csv(
        shared_data / "julia-ci-durations.csv.gz", {**mapping, "duration_s": "duration_s"}
    ).frame
    series = series_from_frame(frame, "step")
    result = run_simulation(series, 0.0, refits=1)
    planner, avg = result.policies["planner"], result.policies["avg10_x1.2"]
    assert planner.runs == avg.runs == 8640 - 2528  # 8640 jobs, 30 % (by start) train
    assert 0.035 < planner.overrun_rate < 0.065
    assert avg.overrun_rate > 0.08
    assert planner.deferrals < 0.7 * avg.deferrals
    assert planner.idle_s_mean < 400.0  # the per-series rule it replaced: 351 s at 6.7 %
    assert result.policies["oracle"].collisions == 0
