"""Grouped last-k baselines: the most specific group with history, then broader ones."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from planner.learning.baselines import GroupedLastK
from planner.learning.features import attempt_features


def _frame(
    make_history: Callable[..., pd.DataFrame], rows: list[tuple[str, str, float, float]]
) -> pd.DataFrame:
    """Attempts one after the other (each finished before the next starts)."""
    frame = make_history(len(rows), steps=("s",), accounts=("a",)).iloc[: len(rows)].copy()
    t0 = frame["started_at"].iloc[0]
    frame["step"] = pd.array([r[0] for r in rows], dtype="string")
    frame["account"] = pd.array([r[1] for r in rows], dtype="string")
    frame["quantity"] = [r[2] for r in rows]
    frame["params"] = [{} for _ in rows]
    frame["duration_s"] = [r[3] for r in rows]
    frame["started_at"] = t0 + pd.to_timedelta(np.arange(len(rows)) * 1000.0, unit="s")
    frame["finished_at"] = frame["started_at"] + pd.to_timedelta(frame["duration_s"], unit="s")
    return frame.reset_index(drop=True)


def test_fallback_order_most_specific_group_first(
    make_history: Callable[..., pd.DataFrame],
) -> None:
    rows = [
        ("s1", "a1", 10.0, 100.0),
        ("s1", "a1", 20.0, 200.0),
        ("s1", "a2", 10.0, 400.0),
        ("s2", "a3", 10.0, 800.0),
        # targets
        ("s1", "a1", 10.0, 1.0),  # (step, account, quantity, params) has history: 100
        ("s1", "a1", 30.0, 1.0),  # only (step, account): last-2 of 100, 200 -> 150
        ("s1", "a9", 10.0, 1.0),  # only step s1
        ("s9", "a1", 10.0, 1.0),  # nothing but "all"
    ]
    frame = _frame(make_history, rows)
    frame.loc[4:, "started_at"] = frame["started_at"].iloc[4]  # targets start together
    frame["finished_at"] = frame["started_at"] + pd.to_timedelta(frame["duration_s"], unit="s")
    X = attempt_features(frame)
    base = GroupedLastK(k=2).fit(X.iloc[:4], frame["duration_s"].iloc[:4])
    pred, used = base.predict_with_level(X.iloc[4:])
    labels = base.sources(used)
    assert labels == [
        "last2:step,account,quantity,params",
        "last2:step,account",
        "last2:step",
        "last2:all",
    ]
    assert pred[0] == pytest.approx(100.0)
    assert pred[1] == pytest.approx(150.0)
    assert pred[2] == pytest.approx(300.0)  # s1 finished 100, 200, 400: last two
    assert pred[3] == pytest.approx(600.0)  # all: 400 then 800 finished last


def test_no_history_uses_the_fit_median_and_factor(
    make_history: Callable[..., pd.DataFrame],
) -> None:
    frame = _frame(make_history, [("s", "a", 1.0, 10.0), ("s", "a", 1.0, 30.0)])
    X = attempt_features(frame)
    flat = GroupedLastK(k=10, factor=1.2).fit(X, frame["duration_s"])
    pred = flat.predict(X)
    assert pred[0] == pytest.approx(20.0 * 1.2)  # nothing before the first: median of fit
    assert pred[1] == pytest.approx(10.0 * 1.2)


def test_parameters_are_checked_in_fit(make_history: Callable[..., pd.DataFrame]) -> None:
    frame = _frame(make_history, [("s", "a", 1.0, 10.0)])
    X = attempt_features(frame)
    bad = GroupedLastK(k=3)  # storing is fine, fitting is not
    with pytest.raises(ValueError, match="k must be one of"):
        bad.fit(X, frame["duration_s"])
