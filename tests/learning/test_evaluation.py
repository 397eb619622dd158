"""Evaluation is time-ordered: fit on the past, predict each test attempt at its start."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from planner.learning.evaluation import METHODS, evaluate, holdout_split, metrics
from planner.learning.features import to_seconds
from planner.learning.models import DurationModel


def test_holdout_is_the_latest_part_and_train_finished_before_it(
    make_history: Callable[..., pd.DataFrame],
) -> None:
    frame = make_history(30).sort_values("started_at").reset_index(drop=True)
    train, test = holdout_split(frame, 0.3)
    assert test.sum() == int(np.ceil(len(frame) * 0.3))
    starts = to_seconds(frame["started_at"])
    first_test = starts[test].min()
    assert starts[~test].max() <= first_test
    assert (to_seconds(frame["finished_at"])[train] < first_test).all()


def test_future_of_the_test_part_does_not_change_earlier_predictions(
    make_history: Callable[..., pd.DataFrame], fast_params: dict
) -> None:
    frame = make_history(40, seed=5)
    make = lambda hgb: DurationModel(use_hgb=hgb, **fast_params)  # noqa: E731
    base = evaluate(frame, holdout=0.3, make_model=make)
    # blow up the last quarter: the first half of the test part must score the same
    altered = frame.copy()
    late = altered.index >= int(len(frame) * 0.85)
    altered.loc[late, "duration_s"] *= 50.0
    altered["finished_at"] = altered["started_at"] + pd.to_timedelta(
        altered["duration_s"], unit="s"
    )
    other = evaluate(altered, holdout=0.3, make_model=make)
    for m in METHODS:
        assert other.halves[0][m] == pytest.approx(base.halves[0][m], nan_ok=True)
    assert other.halves[1]["model"] != base.halves[1]["model"]
    assert set(base.methods) == set(METHODS)
    assert base.rows_test == int(np.ceil(len(frame) * 0.3))


def test_metrics() -> None:
    m = metrics(np.array([100.0, 200.0]), np.array([110.0, 100.0]), np.array([150.0, 150.0]))
    assert m["mae_s"] == pytest.approx(55.0)
    assert m["mdape"] == pytest.approx(0.3)
    assert m["overrun"] == pytest.approx(0.5)
    assert m["median_bound_ratio"] == pytest.approx((1.5 + 0.75) / 2)
    assert m["mean_abs_log"] == pytest.approx((abs(np.log(1.1)) + abs(np.log(0.5))) / 2)
