"""Calibrated upper bounds: split conformal calibration adapted online (ACI).

The bound of a task is ``exp(center + offset)`` seconds, where ``center`` is a log-scale
estimate (a quantile regression for conformalized quantile regression, or the log of a
point prediction) and ``offset`` the ``1 - alpha_t`` empirical quantile of the recent
conformity scores ``log(actual) - center``. Scores start from a time-ordered calibration
slice (:meth:`AdaptiveConformal.calibrate`) and every attempt that finishes adds its score
and moves ``alpha_t`` by adaptive conformal inference (Gibbs & Candes 2021):
``alpha_t += gamma * (alpha - err_t)``, ``err_t = 1`` when the attempt overran the bound it
was given at its start. So coverage holds under drift.

ACI can drive ``alpha_t`` to 0 or below, an infinite bound: it is clamped to the largest
recent score and counted in ``clamped_``. A bound is never below its point prediction.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable

import numpy as np

__all__ = ["AdaptiveConformal"]

#: The offset used before any score was seen: a bound of twice the center.
_NO_SCORE_OFFSET = math.log(2.0)


class AdaptiveConformal:
    """One-sided conformal upper bound on a log scale with ACI updates.

    Parameters
    ----------
    quantile : target coverage (``0.95``: at most 5 % of attempts overrun their bound)
    gamma : ACI step size
    window : how many recent scores are kept
    """

    def __init__(self, quantile: float = 0.95, gamma: float = 0.005, window: int = 5000) -> None:
        self.quantile = quantile
        self.gamma = gamma
        self.window = window

    def calibrate(self, scores: Iterable[float]) -> AdaptiveConformal:
        """Start from the scores of a calibration slice (in time order); returns self."""
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile!r}")
        if not self.gamma >= 0.0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma!r}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window!r}")
        self.alpha_t_ = 1.0 - self.quantile
        self.recent_: deque[float] = deque()
        self.sorted_: list[float] = []
        self.updates_ = 0
        self.overruns_ = 0
        self.clamped_ = 0
        for score in scores:
            if math.isfinite(score):
                self._add(float(score))
        return self

    def _add(self, score: float) -> None:
        self.recent_.append(score)
        bisect.insort(self.sorted_, score)
        if len(self.recent_) > self.window:
            old = self.recent_.popleft()
            del self.sorted_[bisect.bisect_left(self.sorted_, old)]

    def offset(self) -> float:
        """The current log offset over the center (counts a clamp when alpha_t <= 0)."""
        n = len(self.sorted_)
        if n == 0:
            return _NO_SCORE_OFFSET
        if self.alpha_t_ >= 1.0:
            return -math.inf
        if self.alpha_t_ <= 0.0:
            self.clamped_ += 1
            return self.sorted_[-1]
        rank = math.ceil((n + 1) * (1.0 - self.alpha_t_))
        if rank > n:
            self.clamped_ += 1
            return self.sorted_[-1]
        return self.sorted_[max(rank, 1) - 1]

    def bounds(self, center_log: np.ndarray, point_s: np.ndarray) -> np.ndarray:
        """Bounds in seconds for many tasks at the current state (never below the point)."""
        offset = self.offset()
        with np.errstate(over="ignore"):
            bound = np.exp(np.asarray(center_log, dtype="float64") + offset)
        return np.asarray(np.maximum(bound, np.asarray(point_s, dtype="float64")), dtype="float64")

    def update(self, score: float, overran: bool) -> None:
        """Feed one finished attempt: its score and whether it overran its issued bound."""
        self.updates_ += 1
        self.overruns_ += int(overran)
        err = 1.0 if overran else 0.0
        self.alpha_t_ += self.gamma * ((1.0 - self.quantile) - err)
        if math.isfinite(score):
            self._add(float(score))
