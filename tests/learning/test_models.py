"""The duration model follows the scikit-learn estimator contract and learns the structure."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from planner.learning.features import attempt_features
from planner.learning.memory import PeakMemoryRegressor
from planner.learning.models import VARIANTS, DurationModel


def _fitted_attrs(est: object) -> set[str]:
    return {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}


def test_estimator_contract(make_history: Callable[..., pd.DataFrame], fast_params: dict) -> None:
    frame = make_history(40)
    X, y = attempt_features(frame), frame["duration_s"].to_numpy()
    model = DurationModel(quantile=0.9, **fast_params)
    # __init__ only stores parameters; nothing fitted yet
    assert not _fitted_attrs(model)
    assert model.get_params()["quantile"] == 0.9
    assert clone(model).get_params() == model.get_params()
    assert model.fit(X, y) is model
    fitted = _fitted_attrs(model)
    assert {"variant_", "conformal_", "last2_", "last10_", "feature_names_"} <= fitted
    assert model.variant_ in VARIANTS
    # parameters are validated in fit, not in __init__
    bad = DurationModel(quantile=1.5)
    with pytest.raises(ValueError, match="quantile"):
        bad.fit(X, y)
    with pytest.raises(ValueError, match="durations"):
        DurationModel(**fast_params).fit(X, -y)


def test_model_beats_the_grouped_mean_when_quantity_matters(
    make_history: Callable[..., pd.DataFrame], fast_params: dict
) -> None:
    # durations depend on a quantity that never repeats: the model sees it, the grouped
    # mean cannot (no two attempts share a (step, account, quantity) group)
    frame = make_history(80, noise=0.05, seed=4, quantities=None)
    X, y = attempt_features(frame), frame["duration_s"].to_numpy()
    n = int(len(y) * 0.8)
    model = DurationModel(**fast_params).fit(X.iloc[:n], y[:n])
    pred = model.predict(X.iloc[n:])
    bound_center = model.predict_center(X.iloc[n:])
    err_model = np.median(np.abs(pred - y[n:]) / y[n:])
    err_base = np.median(np.abs(model.last10_.predict(X.iloc[n:]) - y[n:]) / y[n:])
    assert err_model < err_base
    assert bound_center.shape == pred.shape
    assert model.source() in ("model", None)


def test_baselines_only_model(make_history: Callable[..., pd.DataFrame]) -> None:
    frame = make_history(3)
    X, y = attempt_features(frame), frame["duration_s"].to_numpy()
    model = DurationModel(use_hgb=False).fit(X, y)
    assert model.variant_ in ("last2", "last10")
    assert model.source() is None
    assert model.quantile_model_ is None
    assert np.all(model.predict(X) > 0)


def test_peak_memory_regressor(make_history: Callable[..., pd.DataFrame]) -> None:
    frame = make_history(10)
    reg = PeakMemoryRegressor(quantile=0.9)
    assert reg.fit(frame, frame["peak_rss_mb"]) is reg
    assert reg.predict_keys(["collect", "collect", "nope"], ["a1", "zz", "a1"]) == [
        pytest.approx(50.0),
        pytest.approx(
            np.quantile(frame.loc[frame["step"] == "collect", "peak_rss_mb"].tail(20), 0.9)
        ),
        pytest.approx(np.quantile(frame["peak_rss_mb"].tail(20), 0.9)),
    ]
    with pytest.raises(ValueError, match="quantile"):
        PeakMemoryRegressor(quantile=0.0).fit(frame, frame["peak_rss_mb"])


def test_forced_variant_and_bound_are_validated_in_fit(
    make_history: Callable[..., pd.DataFrame], fast_params: dict
) -> None:
    frame = make_history(20)
    X, y = attempt_features(frame), frame["duration_s"].to_numpy()
    model = DurationModel(use_hgb=False, variant="last10").fit(X, y)
    assert model.variant_ == "last10"
    assert model.source() is None and model.baseline() is model.last10_
    forced = DurationModel(variant="hgb", **fast_params).fit(X, y)
    assert forced.variant_ == "hgb" and forced.hgb_ is not None
    for bad, match in (
        ({"use_hgb": False, "variant": "hgb"}, "needs use_hgb"),
        ({"variant": "nope"}, "variant"),
        ({"bound": "model"}, "bound"),
    ):
        with pytest.raises(ValueError, match=match):
            DurationModel(**bad).fit(X, y)


def test_the_bound_center_is_never_below_the_point(
    make_history: Callable[..., pd.DataFrame], fast_params: dict
) -> None:
    frame = make_history(40, seed=2)
    X, y = attempt_features(frame), frame["duration_s"].to_numpy()
    for model in (DurationModel(**fast_params), DurationModel(use_hgb=False)):
        model.fit(X, y)
        point, center = model.predict_both(X)
        assert np.all(center >= point)
        bounds = model.conformal_.bounds(center, np.exp(point))
        assert np.all(bounds >= np.exp(point))
        assert model.class_calibration_ is not None
