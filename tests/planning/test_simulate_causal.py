"""Planner's bounds in the simulation use no look-ahead: changing the durations of the runs
that finish after a decision (in any series) leaves that decision unchanged, while changing
what had finished before it changes it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from planner.learning.online import MIN_MODEL_ROWS, causal_bounds
from planner.planning.simulate import (
    Series,
    occurrence_frame,
    policy_intervals,
    split_time,
)
from planner.service.simulation import planner_bounds

HOUR = 3600.0


def heavy_tailed(n_series: int = 8, n_runs: int = 100, seed: int = 0) -> list[Series]:
    """Series with a quantity that matters, log-normal noise and a few long outliers; runs
    start every 2 h (with jitter) so that some overlap the next start in real time."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_series):
        quantity = rng.choice([1.0, 2.0, 4.0], n_runs)
        base = 300.0 * (1 + i % 3) * quantity**0.8
        d = base * np.exp(rng.normal(0.0, 0.5, n_runs))
        d[rng.random(n_runs) < 0.05] *= 8.0
        starts = 1.7e9 + np.arange(n_runs) * 2 * HOUR + rng.uniform(0, HOUR, n_runs) + 60.0 * i
        context = pd.DataFrame(
            {
                "step": ["job"] * n_runs,
                "account": [f"u{i}"] * n_runs,
                "quantity": quantity,
                "params": [{"requested": float(q * 1800)} for q in quantity],
            }
        )
        out.append(Series(f"u{i}", starts, d, context))
    return out


def finishing_after(series: list[Series], t: float, factor: float) -> list[Series]:
    """The same series, the runs that finish after ``t`` lasting longer (so still after)."""
    return [
        Series(
            s.name,
            s.starts,
            np.where(s.starts + s.durations > t, s.durations * factor + 50.0, s.durations),
            s.context,
        )
        for s in series
    ]


@pytest.mark.parametrize(("refits", "where"), [(1, (0.0, 0.01, 0.5, 0.9)), (3, (0.55,))])
def test_runs_finishing_after_a_decision_do_not_change_it(
    refits: int, where: tuple[float, ...]
) -> None:
    series = heavy_tailed()
    start = split_time(series, 0.3)
    frame = occurrence_frame(series)
    trained = (frame["finished_at"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds() < start
    assert trained.sum() >= MIN_MODEL_ROWS  # the gradient boosting model, not baselines
    before = planner_bounds(series, start, refits=refits)
    starts = np.concatenate([s.starts for s in series])
    scored = np.sort(starts[starts >= start])
    for t in (scored[int(len(scored) * f)] for f in where):
        changed = finishing_after(series, t, factor=4.0)
        after = planner_bounds(changed, start, refits=refits)
        later_differs = False
        for s, old, new, new_s in zip(series, before, after, changed, strict=True):
            decided = s.starts <= t
            # every decision made by t (this series or another) is unchanged...
            np.testing.assert_array_equal(new[decided], old[decided])
            np.testing.assert_array_equal(
                policy_intervals(new_s.durations, 0.0, "planner", bounds=new)[decided],
                policy_intervals(s.durations, 0.0, "planner", bounds=old)[decided],
            )
            later_differs |= not np.array_equal(new[~decided], old[~decided])
        # ...and the later ones do see the change once those runs have finished
        assert later_differs


def test_runs_finished_before_a_decision_do_change_it() -> None:
    """The control: the bound does use the past (else the test above proves nothing)."""
    series = heavy_tailed()
    start = split_time(series, 0.3)
    before = planner_bounds(series, start, refits=1)
    i, k = 2, 60
    t = series[i].starts[k]
    assert t > start
    changed = [
        Series(
            s.name,
            s.starts,
            np.where(s.starts + s.durations < t - HOUR, s.durations * 3.0, s.durations),
            s.context,
        )
        for s in series
    ]
    after = planner_bounds(changed, start, refits=1)
    assert after[i][k] != pytest.approx(before[i][k], rel=0.05)


def test_causal_bounds_calibrated_and_never_before_the_split() -> None:
    series = heavy_tailed(seed=1)
    start = split_time(series, 0.3)
    frame = occurrence_frame(series)
    bounds = causal_bounds(frame, start, quantile=0.9)
    started = (frame["started_at"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    assert np.isnan(bounds[started < start]).all()
    scored = started >= start
    assert np.isfinite(bounds[scored]).all()
    overrun = float(np.mean(frame["duration_s"].to_numpy()[scored] > bounds[scored]))
    assert 0.03 < overrun < 0.18  # target 10 %
    with pytest.raises(ValueError, match="quantile"):
        causal_bounds(frame, start, quantile=1.0)
    # nothing finished before the split: no estimate at all (the cadence decides)
    assert np.isnan(causal_bounds(frame, float(started.min()))).all()


def test_runs_started_before_the_split_and_still_running_are_not_known() -> None:
    """The growth lines (duration against quantity) are fitted on the runs finished before
    the first decision, not on those merely started: the last runs before the split, long
    ones, are still running during the first decisions after it, which are at a quantity
    4x the largest seen (so predicted along the lines)."""
    series = heavy_tailed()
    start = split_time(series, 0.3)
    decisions = np.sort(np.concatenate([s.starts for s in series]))
    t = decisions[np.searchsorted(decisions, start) + 20]  # they end after 20 decisions

    def with_last(factor: float) -> list[Series]:
        """Those runs end an hour after ``t``, the largest ones ``factor`` times later."""
        out = []
        for s in series:
            assert s.context is not None
            context = s.context.copy()
            quantity = context["quantity"].to_numpy(copy=True)
            quantity[s.starts >= start] = 16.0
            context["quantity"] = quantity
            d = s.durations.copy()
            last = np.flatnonzero(s.starts < start)[-20:]
            large = quantity[last] == 4.0
            d[last] = (t - s.starts[last] + HOUR) * np.where(large, factor, 1.0)
            out.append(Series(s.name, s.starts, d, context))
        return out

    before = planner_bounds(with_last(1.0), start, refits=1)
    after = planner_bounds(with_last(5.0), start, refits=1)
    for s, old, new in zip(series, before, after, strict=True):
        decided = s.starts <= t
        np.testing.assert_array_equal(new[decided], old[decided])
        assert np.isfinite(new[decided & (s.starts >= start)]).all()
