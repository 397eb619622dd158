"""The rules operators use today, as scikit-learn estimators over the attempt features.

``GroupedLastK(k=2)`` is the last-2 mean of Tsafrir et al. (2007); ``k=10`` the last-10
mean operators compute by hand. Each takes the mean of the most specific group that has
history at the attempt's start, falling back along :data:`BASELINE_LEVELS`:
(step, account, quantity, params) -> (step, account) -> step -> all. With no history at
all it predicts the median duration seen in ``fit`` (or ``default_s``).

``X`` is a frame made by :func:`planner.learning.features.attempt_features` (or
:func:`~planner.learning.queries.query_features`); only its ``h.<level>.mean<k>`` and
``h.<level>.count`` columns are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from planner.learning.features import BASELINE_LEVELS, level_label

__all__ = ["GroupedLastK"]

_K_COLUMNS = {2: "mean2", 5: "mean5", 10: "mean10"}


class GroupedLastK(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Mean of the last ``k`` durations of the most specific group with history.

    Parameters
    ----------
    k : 2, 5 or 10
    levels : group levels to try, most specific first (names of ``GROUP_LEVELS``)
    factor : multiply the mean by this (``1.2`` gives the flat ``last-10 x 1.2`` rule)
    default_s : prediction when neither the group nor ``fit`` saw any duration
    """

    def __init__(
        self,
        k: int = 2,
        levels: tuple[str, ...] = BASELINE_LEVELS,
        factor: float = 1.0,
        default_s: float = 60.0,
    ) -> None:
        self.k = k
        self.levels = levels
        self.factor = factor
        self.default_s = default_s

    def fit(self, X: pd.DataFrame, y: Any) -> GroupedLastK:
        """Validate the parameters and remember the median duration for rows with no history."""
        if self.k not in _K_COLUMNS:
            raise ValueError(f"k must be one of {sorted(_K_COLUMNS)}, got {self.k!r}")
        if not self.levels:
            raise ValueError("levels must name at least one group level")
        if not self.factor > 0:
            raise ValueError(f"factor must be > 0, got {self.factor!r}")
        values = np.asarray(y, dtype="float64")
        values = values[np.isfinite(values) & (values > 0)]
        self.fallback_s_ = float(np.median(values)) if len(values) else float(self.default_s)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def predict_with_level(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and, per row, the index in ``levels`` used (``len(levels)``: none)."""
        stat = _K_COLUMNS[self.k]
        n = len(X)
        pred = np.full(n, np.nan)
        used = np.full(n, len(self.levels), dtype=np.int64)
        for i, level in enumerate(self.levels):
            count = X[f"h.{level}.count"].to_numpy(dtype="float64")
            value = X[f"h.{level}.{stat}"].to_numpy(dtype="float64")
            take = np.isnan(pred) & (count > 0) & np.isfinite(value)
            pred[take] = value[take]
            used[take] = i
        pred[np.isnan(pred)] = self.fallback_s_
        return pred * self.factor, used

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The grouped last-k mean of each row, in seconds."""
        return self.predict_with_level(X)[0]

    def sources(self, used: np.ndarray) -> list[str]:
        """Labels such as ``"last2:step,account"`` for level indices from predict_with_level."""
        names = [f"last{self.k}:{level_label(level)}" for level in self.levels]
        names.append(f"last{self.k}:none")
        return [names[i] for i in used.tolist()]
