"""Features use only the past: shuffling or altering the future changes nothing before it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.learning.features import (
    attempt_features,
    history_features,
)
from planner.learning.queries import (
    query_features,
    snapshot,
)
from planner.planning.model import TaskQuery


def _alter_future(frame: pd.DataFrame, cut: pd.Timestamp, seed: int) -> pd.DataFrame:
    """Shuffle and inflate the durations of every attempt started at or after ``cut``."""
    rng = np.random.default_rng(seed)
    future = frame["started_at"] >= cut
    altered = frame.copy()
    durations = altered.loc[future, "duration_s"].to_numpy()
    altered.loc[future, "duration_s"] = rng.permutation(durations) * rng.uniform(
        0.1, 10.0, size=len(durations)
    )
    # only the future's finish times, in the frame's own resolution: recomputing the past
    # ones (or changing the unit) moves them by rounding, which the exact comparison of
    # the past would take for a leak
    finished = altered["finished_at"]
    moved = altered.loc[future, "started_at"] + pd.to_timedelta(
        altered.loc[future, "duration_s"], unit="s"
    )
    altered.loc[future, "finished_at"] = moved.dt.floor(finished.dt.unit).astype(finished.dtype)
    return altered


@pytest.mark.parametrize("seed", [1, 2])
def test_no_leak_future_shuffled_features_of_the_past_unchanged(
    make_history: Callable[..., pd.DataFrame], seed: int
) -> None:
    frame = make_history(40, seed=seed)
    cut = frame["started_at"].iloc[len(frame) // 2]
    before = attempt_features(frame)
    after = attempt_features(_alter_future(frame, cut, seed))
    past = (frame["started_at"] < cut).to_numpy()
    pd.testing.assert_frame_equal(before.loc[past], after.loc[past])
    # the alteration is real: the features of the future did change
    assert not before.loc[~past].equals(after.loc[~past])


def test_only_attempts_finished_strictly_before_the_start_count(
    make_history: Callable[..., pd.DataFrame],
) -> None:
    frame = make_history(3, steps=("s",), accounts=("a",))
    frame = frame.iloc[:3].copy()
    t = frame["started_at"].iloc[0]
    frame["started_at"] = [t, t + pd.Timedelta(seconds=10), t + pd.Timedelta(seconds=20)]
    frame["duration_s"] = [10.0, 50.0, 5.0]  # the first ends exactly when the second starts
    frame["finished_at"] = frame["started_at"] + pd.to_timedelta(frame["duration_s"], unit="s")
    feats = attempt_features(frame)
    assert feats["h.sa.count"].tolist() == [
        0.0,
        0.0,
        1.0,
    ]  # 2nd: a finish at its start is not "before"
    assert feats.loc[2, "h.sa.last"] == 10.0  # the 2nd (still running) is not used
    assert feats.loc[2, "running"] == 1.0
    assert feats.loc[2, "h.sa.since"] == pytest.approx(10.0)


def test_rolling_statistics_of_a_group(make_history: Callable[..., pd.DataFrame]) -> None:
    frame = make_history(12, steps=("s",), accounts=("a",), noise=0.0)
    frame["duration_s"] = np.arange(1.0, 13.0)
    frame["started_at"] = frame["started_at"].iloc[0] + pd.to_timedelta(
        np.arange(12) * 100.0, unit="s"
    )
    frame["finished_at"] = frame["started_at"] + pd.to_timedelta(frame["duration_s"], unit="s")
    feats = history_features(frame.iloc[[11]], frame)
    row = feats.iloc[0]
    assert row["h.sa.last"] == 11.0
    assert row["h.sa.mean2"] == pytest.approx(10.5)
    assert row["h.sa.mean10"] == pytest.approx(np.mean(np.arange(2.0, 12.0)))
    assert row["h.sa.median5"] == pytest.approx(9.0)
    assert row["h.sa.count"] == 11.0
    assert row["h.sa.trend"] == pytest.approx(np.log(10.5 / 6.5))


def test_query_features_match_attempt_features(make_history: Callable[..., pd.DataFrame]) -> None:
    frame = make_history(20, seed=3)
    i = len(frame) - 5
    row = frame.iloc[i]
    now = row["started_at"].to_pydatetime()
    task = TaskQuery(
        step=str(row["step"]),
        account=str(row["account"]),
        quantity=float(row["quantity"]),
        params=dict(row["params"]),
        n_accounts=int(row["n_accounts"]),
        concurrency=int(row["concurrency"]),
    )
    from_query = query_features(snapshot(frame, now), [task], now).iloc[0]
    from_frame = attempt_features(frame).iloc[i]
    assert list(from_query.index) == list(from_frame.index)
    np.testing.assert_allclose(
        from_query.to_numpy(dtype=float), from_frame.to_numpy(dtype=float), equal_nan=True
    )


# make_history only returns a pure function: sharing it across examples is safe
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    cut_fraction=st.floats(0.1, 0.9),
    n_runs=st.integers(2, 12),
)
def test_no_leak_property(
    make_history: Callable[..., pd.DataFrame], seed: int, cut_fraction: float, n_runs: int
) -> None:
    """Any history, any cut: altering what starts after the cut leaves the past alone."""
    frame = make_history(n_runs, seed=seed, accounts=("a1", "a2"), every_s=120.0)
    cut = frame["started_at"].iloc[int(len(frame) * cut_fraction)]
    past = (frame["started_at"] < cut).to_numpy()
    before = attempt_features(frame).loc[past]
    after = attempt_features(_alter_future(frame, cut, seed)).loc[past]
    pd.testing.assert_frame_equal(before, after)
