"""The rules operators use today, as scikit-learn estimators over the attempt features.

``GroupedLastK(k=2)`` is the last-2 mean of Tsafrir et al. (2007); ``k=10`` the last-10
mean operators compute by hand. Each takes the mean of the most specific group that has
history at the attempt's start, falling back along :data:`BASELINE_LEVELS`:
(step, account, quantity, params) -> (step, account) -> step -> all. With no history at
all it predicts the median duration seen in ``fit`` (or ``default_s``).

Durations grow with the size of the work (:mod:`planner.learning.growth`): a group's mean
is scaled by the task's ``work`` over the mean work of the attempts it averages
(``h.<level>.work2``/``work10``), so "the same step and account at any quantity" becomes
"... at this quantity", and a quantity beyond any seen is extrapolated along the step's
line. At the exact level (same quantity) the ratio is 1; at ``all`` it is not applied.

``X`` is a frame made by :func:`planner.learning.features.attempt_features` (or
:func:`~planner.learning.queries.query_features`); only its ``work``,
``h.<level>.mean<k>``, ``h.<level>.work<k>`` and ``h.<level>.count`` columns are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from planner.learning.features import BASELINE_LEVELS, level_label
from planner.learning.growth import ratio

__all__ = ["GroupedLastK"]

_K_COLUMNS = {2: "mean2", 5: "mean5", 10: "mean10"}
_K_WORK = {2: "work2", 5: "work10", 10: "work10"}


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
        stat, work_stat = _K_COLUMNS[self.k], _K_WORK[self.k]
        n = len(X)
        pred = np.full(n, np.nan)
        used = np.full(n, len(self.levels), dtype=np.int64)
        work = X["work"].to_numpy(dtype="float64") if "work" in X else None
        for i, level in enumerate(self.levels):
            count = X[f"h.{level}.count"].to_numpy(dtype="float64")
            value = X[f"h.{level}.{stat}"].to_numpy(dtype="float64")
            take = np.isnan(pred) & (count > 0) & np.isfinite(value)
            column = f"h.{level}.{work_stat}"
            if work is not None and level != "all" and column in X:
                value = value * ratio(work, X[column].to_numpy(dtype="float64"))
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
