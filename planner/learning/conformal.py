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
recent score and counted in ``clamped_``.

A bound is never below its point prediction, and a negative offset (the recent scores say
the centers are too high) removes at most half of a center's margin over its point
(:data:`KEEP_MARGIN`): a center above the point, which the duration model guarantees for
every task whose group's history is not constant, gives a bound strictly above the point.

Level-conditional (Mondrian) calibration. Scores are exchangeable only among tasks whose
predictions rest on the same kind of history: a task whose exact group (step, account,
quantity, params) has run is predicted far better than one whose account never ran the
step. :func:`class_offsets` calibrates one offset per :data:`HISTORY_CLASSES` (from the
level the grouped last-2 mean used); the duration model adds it to each task's center, so
the pooled online state above then starts near 0 for every class and only follows drift.
A class with too few scores in the calibration slice is calibrated on the honest residuals
of the grouped last-2 mean (which learns nothing: every training attempt is out of sample)
around that mean instead.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.learning.features import BASELINE_LEVELS

__all__ = [
    "HISTORY_CLASSES",
    "KEEP_MARGIN",
    "AdaptiveConformal",
    "ClassCalibration",
    "bound_log",
    "class_offsets",
    "conformal_quantile",
    "history_classes",
    "min_certifying",
    "spread_floor",
]

#: The offset used before any score was seen: a bound of twice the center.
_NO_SCORE_OFFSET = math.log(2.0)
#: Share of a center's margin over its point that a negative offset cannot remove.
KEEP_MARGIN = 0.5
#: Share of the way from a group's recent mean to (a lower estimate of) its longest recent
#: duration that a bound's center is at least above the point (:func:`spread_floor`).
#: Measured on the real traces' holdouts: the whole way cost 0.3 % (Julia) to 0.5 % (KTH)
#: of median bound/actual for no coverage, half of it nothing measurable.
FLOOR_SHARE = 0.5
#: Classes of tasks by the history their prediction rests on (index = class): the exact
#: group (step, account, quantity, params) has run; only (step, account) has; neither
#: (the step, the pipeline, or nothing at all).
HISTORY_CLASSES = ("exact", "group", "new")


def history_classes(level_used: np.ndarray) -> np.ndarray:
    """The class of each task from the index of the baseline level its last-2 mean used
    (0 ``sapq``, 1 ``sa``, 2 and above: step, all, none)."""
    return np.minimum(np.asarray(level_used, dtype=np.int64), len(HISTORY_CLASSES) - 1)


def conformal_quantile(scores: np.ndarray, quantile: float) -> float:
    """The split-conformal ``quantile`` of ``scores``: the ``ceil((n + 1) q)``-th smallest
    (the largest when that rank passes ``n``); NaN when there is none."""
    values = np.sort(np.asarray(scores, dtype="float64")[np.isfinite(scores)])
    n = len(values)
    if n == 0:
        return float("nan")
    rank = min(math.ceil((n + 1) * quantile), n)
    return float(values[max(rank, 1) - 1])


def min_certifying(quantile: float) -> int:
    """The fewest scores whose split-conformal ``quantile`` is one of them (not beyond the
    largest): ``n >= q / (1 - q)``, 19 at 0.95."""
    return max(1, math.ceil(quantile / (1.0 - quantile) - 1e-9))


def bound_log(center: np.ndarray, point_log: np.ndarray, offset: float) -> np.ndarray:
    """Log bounds at ``offset``: ``center + offset``, never below the point, and a negative
    offset keeps :data:`KEEP_MARGIN` of the center's margin over the point."""
    center = np.asarray(center, dtype="float64")
    point_log = np.asarray(point_log, dtype="float64")
    margin = np.maximum(center - point_log, 0.0)
    return np.asarray(
        np.maximum(center + offset, point_log + KEEP_MARGIN * margin), dtype="float64"
    )


def spread_floor(X: pd.DataFrame, used: np.ndarray) -> np.ndarray:
    """Log of ``1 + FLOOR_SHARE x cv / sqrt(n - 1)`` per task: ``cv`` the coefficient of
    variation of the last ``n`` (up to 10) durations of the group level ``used`` (indices
    into :data:`~planner.learning.features.BASELINE_LEVELS`); 0 for one duration, a
    constant history or no history. ``mean + std / sqrt(n - 1)`` never exceeds the largest
    of the ``n`` durations (it equals it for two): the floor is :data:`FLOOR_SHARE` of the
    way from a group's mean to that lower estimate of its longest recent duration."""
    used = np.asarray(used, dtype=np.int64)
    ratio_ = np.zeros(len(used))
    for i, level in enumerate(BASELINE_LEVELS):
        rows = used == i
        if not rows.any():
            continue
        n = np.minimum(X[f"h.{level}.count"].to_numpy(dtype="float64")[rows], 10.0)
        mean = X[f"h.{level}.mean10"].to_numpy(dtype="float64")[rows]
        std = X[f"h.{level}.std10"].to_numpy(dtype="float64")[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            value = FLOOR_SHARE * std / mean / np.sqrt(n - 1.0)
        ratio_[rows] = np.where(np.isfinite(value) & (n >= 2) & (mean > 0), value, 0.0)
    return np.asarray(np.log1p(np.maximum(ratio_, 0.0)), dtype="float64")


@dataclass(frozen=True)
class ClassCalibration:
    """Per history class: the offset added to the center, whether the center is the
    grouped last-2 mean (the class had too few scores in the calibration slice) and how
    many scores calibrated it."""

    offsets: tuple[float, ...]
    on_baseline: tuple[bool, ...]
    counts: tuple[int, ...]

    def describe(self) -> str:
        """One line: ``exact +0.12 (3,985), group +0.40 (812), new +6.9 (100, last-2)``."""
        parts = []
        for name, off, base, n in zip(
            HISTORY_CLASSES, self.offsets, self.on_baseline, self.counts, strict=True
        ):
            parts.append(f"{name} {off:+.2f} ({n:,}{', around last-2' if base else ''})")
        return ", ".join(parts)


def class_offsets(
    scores: np.ndarray,
    classes: np.ndarray,
    baseline_scores: np.ndarray,
    baseline_classes: np.ndarray,
    *,
    quantile: float,
    min_scores: int | None = None,
) -> ClassCalibration:
    """Calibrate one offset per history class.

    ``scores``/``classes``: the calibration slice, scores against the model's center.
    ``baseline_scores``/``baseline_classes``: log(actual / grouped last-2 mean) of every
    training attempt (honest: the mean only uses attempts finished before each start).
    A class with at least ``min_scores`` slice scores gets their conformal quantile; else
    it is calibrated around the last-2 mean on the residuals of that class, or when they
    are fewer than ``min_scores`` of that class and every broader one, or of every
    class; with no score at all, the slice's pooled quantile (0 without any).
    ``min_scores=None``: :func:`min_certifying`, the fewest scores whose conformal
    quantile is not beyond the largest (19 at 0.95).
    """
    if min_scores is None:
        min_scores = min_certifying(quantile)
    scores = np.asarray(scores, dtype="float64")
    classes = np.asarray(classes, dtype=np.int64)
    base = np.asarray(baseline_scores, dtype="float64")
    base_cls = np.asarray(baseline_classes, dtype=np.int64)
    finite = np.isfinite(base)
    base, base_cls = base[finite], base_cls[finite]
    pooled = conformal_quantile(scores, quantile)
    pooled = 0.0 if math.isnan(pooled) else pooled
    offsets: list[float] = []
    on_baseline: list[bool] = []
    counts: list[int] = []
    for c in range(len(HISTORY_CLASSES)):
        mine = scores[(classes == c) & np.isfinite(scores)]
        if len(mine) >= max(min_scores, 1):
            offsets.append(conformal_quantile(mine, quantile))
            on_baseline.append(False)
            counts.append(len(mine))
            continue
        chosen = base[base_cls == c]
        if len(chosen) < max(min_scores, 1):
            chosen = base[base_cls >= c]
        if len(chosen) < max(min_scores, 1):
            chosen = base
        if len(chosen) == 0:
            offsets.append(pooled)
            on_baseline.append(False)
            counts.append(int(np.isfinite(scores).sum()))
            continue
        offsets.append(conformal_quantile(chosen, quantile))
        on_baseline.append(True)
        counts.append(len(chosen))
    return ClassCalibration(tuple(offsets), tuple(on_baseline), tuple(counts))


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
        """Bounds in seconds for many tasks at the current state (:func:`bound_log`: never
        below the point, above it whenever the center is)."""
        offset = self.offset()
        point_s = np.asarray(point_s, dtype="float64")
        with np.errstate(over="ignore", divide="ignore"):
            point_log = np.log(point_s)
            logs = bound_log(center_log, point_log, offset)
            bound = np.exp(np.minimum(logs, 700.0))
        # exactly the point where the bound is the point (exp(log(p)) may differ from p)
        bound = np.where(logs <= point_log, point_s, bound)
        return np.asarray(np.maximum(bound, point_s), dtype="float64")

    def update(self, score: float, overran: bool) -> None:
        """Feed one finished attempt: its score and whether it overran its issued bound."""
        self.updates_ += 1
        self.overruns_ += int(overran)
        err = 1.0 if overran else 0.0
        self.alpha_t_ += self.gamma * ((1.0 - self.quantile) - err)
        if math.isfinite(score):
            self._add(float(score))
