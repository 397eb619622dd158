"""Peak memory per task: a high quantile of the recent peaks of its group.

:class:`PeakMemoryRegressor` learns, from attempts with a measured ``peak_rss_mb`` (the
whole process tree), the ``quantile`` of the last ``last`` peaks of each (step, account)
group, then each step, then all attempts; a task takes the most specific group that has
peaks. Memory is sized for the worst likely case, hence a high quantile rather than a mean.
It is used to size concurrency (how many tasks fit in memory at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

__all__ = ["PeakMemoryRegressor"]


def _text(value: object) -> str:
    return "" if value is None or value is pd.NA else str(value)


class PeakMemoryRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Peak RSS (MB) of a task from the recent peaks of its (step, account) or step.

    Parameters
    ----------
    quantile : which quantile of the recent peaks (0.9: nine runs in ten fit)
    last : how many recent peaks per group count
    """

    def __init__(self, *, quantile: float = 0.9, last: int = 20) -> None:
        self.quantile = quantile
        self.last = last

    def fit(self, X: pd.DataFrame, y: Any) -> PeakMemoryRegressor:
        """``X`` has ``step``, ``account`` (and is in time order); ``y`` the peaks in MB."""
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {self.quantile!r}")
        if self.last < 1:
            raise ValueError(f"last must be >= 1, got {self.last!r}")
        peaks = np.asarray(y, dtype="float64")
        if len(peaks) != len(X):
            raise ValueError("X and y must have the same number of rows")
        keep = np.isfinite(peaks) & (peaks > 0)
        frame = pd.DataFrame(
            {
                "step": [_text(v) for v in X["step"].tolist()],
                "account": [_text(v) for v in X["account"].tolist()],
                "peak": peaks,
            }
        ).loc[keep]
        self.by_step_account_: dict[tuple[str, str], float] = {}
        self.by_step_: dict[str, float] = {}
        for key, group in frame.groupby(["step", "account"], sort=False):
            values = group["peak"].to_numpy()[-self.last :]
            self.by_step_account_[(str(key[0]), str(key[1]))] = float(
                np.quantile(values, self.quantile)
            )
        for key, group in frame.groupby("step", sort=False):
            values = group["peak"].to_numpy()[-self.last :]
            self.by_step_[str(key)] = float(np.quantile(values, self.quantile))
        tail = frame["peak"].to_numpy()[-self.last :]
        self.overall_: float | None = float(np.quantile(tail, self.quantile)) if len(tail) else None
        self.n_features_in_ = X.shape[1]
        return self

    def predict_keys(
        self, steps: Sequence[str], accounts: Sequence[str | None]
    ) -> list[float | None]:
        """Peak MB for each (step, account); None when no attempt ever reported a peak."""
        by_pair, by_step, overall = self.by_step_account_, self.by_step_, self.overall_
        texts = ["" if a is None else str(a) for a in accounts]
        out: list[float | None] = list(map(by_pair.get, zip(steps, texts, strict=True)))
        for i, value in enumerate(out):
            if value is None:  # no peak for the pair: its step's, else everyone's
                out[i] = by_step.get(steps[i], overall)
        return out

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Peak MB of each row of ``X`` (``step``, ``account``); NaN when unknown."""
        values = self.predict_keys(
            [_text(v) for v in X["step"].tolist()], [_text(v) for v in X["account"].tolist()]
        )
        return np.array([np.nan if v is None else v for v in values], dtype="float64")
