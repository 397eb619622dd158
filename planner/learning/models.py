"""The duration model: gradient boosting on log duration, with a calibrated upper bound.

:class:`DurationModel` follows the scikit-learn estimator contract (parameters stored in
``__init__``, validation in ``fit``, which returns ``self``; fitted state ends in ``_``).
``fit(X, y)`` expects the rows of ``X`` (from :func:`~planner.learning.features.
attempt_features`) in start-time order and:

1. splits off the last ``validation_fraction`` of the rows (a time-ordered slice);
2. fits the candidate variants on the earlier rows: ``hgb`` (HistGradientBoosting with
   absolute error on log duration, i.e. the conditional median, which serves both MAE and
   MdAPE), ``residual`` (the same on log(actual / grouped last-2 mean)), ``ensemble``
   (log-mean of ``residual``, last-2 and last-10),
   ``mix`` (log-mean of last-2 and last-10) and the baselines ``last2`` and ``last10``;
3. keeps the variant with the best validation score (MdAPE and MAE, each relative to the
   better baseline; the ensemble unless another is ``prefer_margin`` better: averages
   hold up better under drift than the winner of one slice) and refits it on every row;
4. fits a quantile model (loss ``quantile`` at ``quantile`` on log duration, or on its
   ratio to the grouped last-2 mean, whichever bound is tighter on the validation
   slice) on the earlier rows and calibrates an :class:`AdaptiveConformal` on the validation slice
   (conformalized quantile regression). With ``use_hgb=False`` (little history) only the
   baselines are candidates and the bound is conformal around the chosen baseline;
   ``variant`` forces one variant (``planner train`` serves the best baseline that way
   when the model is worse on the holdout) and ``bound="last2"``/``"last10"`` centers the
   bound on that baseline (when the model's own bound missed its target on the holdout).

The center of a task's bound is then made (:meth:`DurationModel.predict_both`):

- level-conditional: the offset of each history class (exact group seen, only the
  step and account seen, neither: :func:`~planner.learning.conformal.class_offsets`) is
  calibrated on its own scores and added to the center; a class too rare in the slice
  (fewer scores than can certify the coverage: 19 at 0.95) is
  calibrated around the grouped last-2 mean on its residuals over the whole history, so
  a task of a new group gets the width new groups had, not the width of repeated tasks;
- never below ``point x (1 + cv / (2 sqrt(n - 1)))``, with ``cv`` the coefficient of
  variation of the last ``n`` (up to 10) durations of the group the last-2 mean used:
  halfway from the mean to a lower estimate of that group's longest recent duration
  (:func:`~planner.learning.conformal.spread_floor`). So the bound is above the point
  whenever the group's history is not constant.

Gradient boosting runs on one thread by default (``threadpoolctl``): the machines this
runs on are small and shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from planner.learning.baselines import GroupedLastK
from planner.learning.conformal import (
    AdaptiveConformal,
    ClassCalibration,
    class_offsets,
    history_classes,
    spread_floor,
)
from planner.learning.features import WORK_STATS
from planner.learning.growth import ratio

__all__ = ["VARIANTS", "DurationModel", "ModelBundle", "point_scores"]

VARIANTS = ("hgb", "residual", "ensemble", "mix", "last2", "last10")
_BASELINE_VARIANTS = ("last2", "last10")


def point_scores(actual: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(MdAPE, MAE in seconds) of point predictions."""
    actual = np.asarray(actual, dtype="float64")
    pred = np.asarray(pred, dtype="float64")
    if len(actual) == 0:
        return float("nan"), float("nan")
    err = np.abs(pred - actual)
    return float(np.median(err / actual)), float(np.mean(err))


class DurationModel(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Duration regressor on log scale that also gives calibrated upper bounds.

    Parameters
    ----------
    quantile : coverage target of the bound
    use_hgb : False keeps only the baselines (for little history)
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf : gradient boosting settings
    quantile_max_iter, quantile_learning_rate : the same for the quantile model of the bound
        (fewer iterations: faster predictions; at 50 trees a rate of 0.25 gave tighter
        bounds at the same coverage than 0.2 on both real traces' holdouts)
    quantile_residual : True: the quantile model learns log(actual / grouped last-2 mean),
        an easier target that needs fewer trees where the last-2 mean is good; False: it
        learns log(actual); None: both are fitted, the tighter on the validation slice kept
    validation_fraction : last part of the rows used to pick the variant and calibrate
    gamma, window : ACI step size and score window of the bound
    prefer_margin : the ensemble is kept unless a variant scores this much better
    variant : force this variant (one of :data:`VARIANTS`; a boosting one needs
        ``use_hgb``); ``None``: picked on the validation slice
    bound : ``"last2"`` or ``"last10"``: the bound is conformal around that baseline
        instead of the model's quantile regression; ``None``: the model's own
    min_class_scores : a history class with fewer calibration scores in the slice is
        calibrated around the grouped last-2 mean on the whole history (``None``: the
        fewest that can certify the coverage, 19 at 0.95)
    max_rows : fit on the most recent rows only (older history matters less under drift,
        and it bounds the nightly fit time); ``None``: every row
    threads : OpenMP threads for the fits (``None``: leave as is)
    random_state : seed of the gradient boosting
    """

    def __init__(
        self,
        *,
        quantile: float = 0.95,
        use_hgb: bool = True,
        max_iter: int = 100,
        learning_rate: float = 0.15,
        quantile_max_iter: int = 50,
        quantile_learning_rate: float = 0.25,
        quantile_residual: bool | None = None,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 20,
        validation_fraction: float = 0.2,
        gamma: float = 0.005,
        window: int = 5000,
        prefer_margin: float = 0.03,
        variant: str | None = None,
        bound: str | None = None,
        min_class_scores: int | None = None,
        max_rows: int | None = 200_000,
        threads: int | None = 1,
        random_state: int = 0,
    ) -> None:
        self.quantile = quantile
        self.use_hgb = use_hgb
        self.max_iter = max_iter
        self.quantile_max_iter = quantile_max_iter
        self.quantile_learning_rate = quantile_learning_rate
        self.quantile_residual = quantile_residual
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.validation_fraction = validation_fraction
        self.gamma = gamma
        self.window = window
        self.prefer_margin = prefer_margin
        self.variant = variant
        self.bound = bound
        self.min_class_scores = min_class_scores
        self.max_rows = max_rows
        self.threads = threads
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------

    def _hgb(self, loss: str, **extra: Any) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            loss=loss,
            max_iter=self.quantile_max_iter if loss == "quantile" else self.max_iter,
            learning_rate=self.quantile_learning_rate if loss == "quantile" else self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=False,
            random_state=self.random_state,
            **extra,
        )

    def _matrix(self, X: pd.DataFrame, log_b2: np.ndarray | None = None) -> np.ndarray:
        """The boosting input: the fitted feature columns, then log of the grouped last-2."""
        if log_b2 is None:
            log_b2 = np.log(self.last2_.predict(X))
        cols = X.reindex(columns=self.feature_names_).to_numpy(dtype="float64")
        return np.column_stack([cols, log_b2])

    def fit(self, X: pd.DataFrame, y: Any) -> DurationModel:
        """Fit the variants, pick one on the validation slice, calibrate the bound."""
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )
        if self.variant is not None and self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS} or None, got {self.variant!r}")
        if self.variant not in (None, *_BASELINE_VARIANTS) and not self.use_hgb:
            raise ValueError(f"variant {self.variant!r} needs use_hgb=True")
        if self.bound not in (None, *_BASELINE_VARIANTS):
            raise ValueError(f"bound must be 'last2', 'last10' or None, got {self.bound!r}")
        y = np.asarray(y, dtype="float64")
        if len(y) != len(X) or len(y) == 0:
            raise ValueError("X and y must have the same, non-zero number of rows")
        if self.max_rows is not None and len(y) > self.max_rows:
            if self.max_rows < 1:
                raise ValueError(f"max_rows must be >= 1, got {self.max_rows!r}")
            X, y = X.iloc[-self.max_rows :], y[-self.max_rows :]
        if not np.all(np.isfinite(y) & (y > 0)):
            raise ValueError("durations must be finite and > 0")
        self.n_features_in_ = X.shape[1]
        # boosting needs two distinct values in a column (all-NaN columns are dropped)
        # the work columns (growth with size) are for the baselines and the extrapolation
        # below, not the trees: they are a function of the other columns
        self.feature_names_ = [
            str(c) for c in X.columns if X[c].nunique(dropna=True) >= 2 and not _is_work(str(c))
        ]
        self.feature_names_in_ = np.asarray(self.feature_names_, dtype=object)
        self.last2_ = GroupedLastK(k=2).fit(X, y)
        self.last10_ = GroupedLastK(k=10).fit(X, y)
        n = len(y)
        n_val = round(n * self.validation_fraction)
        n_val = min(max(n_val, 1), n - 1) if n > 1 else 0
        head = np.arange(n) < n - n_val
        tail = ~head
        logy = np.log(y)
        candidates: dict[str, np.ndarray] = {}
        X_tail = X.loc[tail]
        candidates["last2"] = self.last2_.predict(X_tail)
        candidates["last10"] = self.last10_.predict(X_tail)
        with _threads(self.threads):
            if self.use_hgb:
                M = self._matrix(X)
                hgb = self._hgb("absolute_error").fit(M[head], logy[head])
                log_b2 = M[:, -1]
                res = self._hgb("absolute_error").fit(M[head], logy[head] - log_b2[head])
                p_hgb = hgb.predict(M[tail])
                p_res = res.predict(M[tail]) + log_b2[tail]
                candidates["hgb"] = np.exp(p_hgb)
                candidates["residual"] = np.exp(p_res)
                candidates["ensemble"] = np.exp(
                    (p_res + np.log(candidates["last2"]) + np.log(candidates["last10"])) / 3.0
                )
                candidates["mix"] = np.sqrt(candidates["last2"] * candidates["last10"])
            self.validation_: dict[str, dict[str, float]] = {}
            for name, pred in candidates.items():
                mdape, mae = point_scores(y[tail], pred)
                self.validation_[name] = {"mdape": mdape, "mae_s": mae}
            self.variant_ = self._pick()
            self.hgb_: Any = None
            self.residual_: Any = None
            if self.variant_ == "hgb":
                self.hgb_ = self._hgb("absolute_error").fit(M, logy)
            if self.variant_ in ("residual", "ensemble"):
                self.residual_ = self._hgb("absolute_error").fit(M, logy - M[:, -1])
            self.quantile_model_: Any = None
            self.quantile_residual_ = False
            raw = np.zeros(0)
            if self.bound is not None:
                raw = np.log(candidates[self.bound])
            elif self.use_hgb and n_val > 0:
                self.quantile_model_, self.quantile_residual_, raw = self._fit_quantile(
                    M, logy, head, tail
                )
                if not self.quantile_residual_:  # as predict_both does
                    raw = raw + _beyond(X_tail)
            elif n_val > 0:
                raw = np.log(candidates[self.variant_])
        self._calibrate(X, logy, tail, raw, candidates)
        return self

    def _calibrate(
        self,
        X: pd.DataFrame,
        logy: np.ndarray,
        tail: np.ndarray,
        raw: np.ndarray,
        candidates: dict[str, np.ndarray],
    ) -> None:
        """Class offsets and the online conformal state, on the validation slice (``raw``:
        the centers there, fitted on the earlier rows only)."""
        b2, used = self.last2_.predict_with_level(X)
        log_b2 = np.log(b2)
        classes = history_classes(used)
        rows = tail
        point = np.log(candidates[self.variant_]) if len(raw) else raw
        if int(tail.sum()) < 5:
            # too little to calibrate on a slice: every row, around the chosen baseline
            # (the baselines learn nothing from the rows, so their scores are honest)
            rows = np.ones(len(logy), dtype=bool)
            base = self.last10_ if self.variant_ == "last10" else self.last2_
            raw = point = np.log(base.predict(X))
        self.class_calibration_: ClassCalibration | None = class_offsets(
            logy[rows] - raw,
            classes[rows],
            logy - log_b2,
            classes,
            quantile=self.quantile,
            min_scores=self.min_class_scores,
        )
        center = self._center(raw, point, log_b2[rows], used[rows], X.loc[rows])
        self.conformal_ = AdaptiveConformal(
            quantile=self.quantile, gamma=self.gamma, window=self.window
        ).calibrate((logy[rows] - center).tolist())

    def _center(
        self,
        raw: np.ndarray,
        point: np.ndarray,
        log_b2: np.ndarray,
        used: np.ndarray,
        X: pd.DataFrame,
    ) -> np.ndarray:
        """The bound's log center: ``raw`` (or the last-2 mean for a class calibrated on
        it) plus its class's offset, never below the point plus the group-spread floor."""
        cal = getattr(self, "class_calibration_", None)
        if cal is None:  # a model saved before classes existed
            return raw
        classes = history_classes(used)
        on_base = np.asarray(cal.on_baseline, dtype=bool)[classes]
        offsets = np.asarray(cal.offsets, dtype="float64")[classes]
        center = np.where(on_base, log_b2, raw) + offsets
        return np.asarray(np.maximum(center, point + spread_floor(X, used)), dtype="float64")

    def _fit_quantile(
        self, M: np.ndarray, logy: np.ndarray, head: np.ndarray, tail: np.ndarray
    ) -> tuple[Any, bool, np.ndarray]:
        """The quantile model of the bound, on log(actual) or on log(actual / last-2).

        With ``quantile_residual=None`` both are fitted on the earlier rows and the one
        whose conformal bound is tighter on the validation slice (median bound/actual at
        the target coverage) is kept. Returns (model, on residual?, center on the slice).
        """
        options = (False, True) if self.quantile_residual is None else (self.quantile_residual,)
        best: tuple[float, Any, bool, np.ndarray] | None = None
        for residual in options:
            offset = M[:, -1] if residual else np.zeros(len(logy))
            model = self._hgb("quantile", quantile=self.quantile).fit(
                M[head], logy[head] - offset[head]
            )
            center = model.predict(M[tail]) + offset[tail]
            scores = logy[tail] - center
            level = min(1.0, np.ceil((len(scores) + 1) * self.quantile) / len(scores))
            width = float(np.median(center + np.quantile(scores, level) - logy[tail]))
            if best is None or width < best[0]:
                best = (width, model, bool(residual), center)
        assert best is not None
        return best[1], best[2], best[3]

    def _pick(self) -> str:
        if self.variant is not None:
            return self.variant
        scores = self.validation_
        ref_mdape = min(scores[b]["mdape"] for b in _BASELINE_VARIANTS)
        ref_mae = min(scores[b]["mae_s"] for b in _BASELINE_VARIANTS)

        def total(name: str) -> float:
            s = scores[name]
            if not np.isfinite(s["mdape"]):
                return np.inf
            return s["mdape"] / max(ref_mdape, 1e-12) + s["mae_s"] / max(ref_mae, 1e-12)

        order = [v for v in VARIANTS if v in scores]
        best = min(order, key=total)
        # Averages are steadier under drift than any single variant: keep the ensemble
        # unless another variant is clearly better on the validation slice.
        if "ensemble" in scores and total("ensemble") <= total(best) * (1.0 + self.prefer_margin):
            return "ensemble"
        return best

    # -- prediction ----------------------------------------------------------------------

    def predict_log(self, X: pd.DataFrame) -> np.ndarray:
        """Log of the point prediction."""
        return self.predict_both(X, center=False)[0]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Point predictions in seconds."""
        return np.asarray(np.exp(self.predict_log(X)), dtype="float64")

    def predict_center(self, X: pd.DataFrame, point_log: np.ndarray | None = None) -> np.ndarray:
        """Log-scale center of the bound (see :meth:`predict_both`; ``point_log`` is
        accepted for compatibility and not needed)."""
        del point_log
        return self.predict_both(X)[1]

    def predict_both(self, X: pd.DataFrame, center: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(log point prediction, log center of the bound) in one pass over ``X``.

        The center is the quantile model (or the bound's baseline, or the point) plus the
        offset of the task's history class, and at least the point plus the group-spread
        floor (module docstring)."""
        b2, used = self.last2_.predict_with_level(X)
        log_b2 = np.log(b2)
        log_b10 = np.log(self.last10_.predict(X))
        variant = self.variant_
        boosted = variant in ("hgb", "residual", "ensemble")
        bound = getattr(self, "bound", None)
        need_matrix = boosted or (center and self.quantile_model_ is not None and bound is None)
        with _threads(self.threads):
            M = self._matrix(X, log_b2) if need_matrix else None
            point: Any
            if variant == "last2":
                point = log_b2
            elif variant == "last10":
                point = log_b10
            elif variant == "mix":
                point = (log_b2 + log_b10) / 2.0
            elif variant == "hgb":
                point = self.hgb_.predict(M)
            else:
                res = self.residual_.predict(M) + log_b2
                point = res if variant == "residual" else (res + log_b2 + log_b10) / 3.0
            point = np.asarray(point, dtype="float64")
            if variant == "hgb":  # trees repeat their edge value beyond the sizes seen
                point = point + _beyond(X)
            if not center:
                return point, point
            raw: np.ndarray
            if bound is not None:
                raw = log_b2 if bound == "last2" else log_b10
            elif self.quantile_model_ is None:
                raw = point
            else:
                q = np.asarray(self.quantile_model_.predict(M), dtype="float64")
                raw = q + log_b2 if self.quantile_residual_ else q + _beyond(X)
        return point, self._center(raw, point, log_b2, used, X)

    def source(self) -> str | None:
        """``"model"`` for a boosting variant, else None (the baseline names its group)."""
        return None if self.variant_ in _BASELINE_VARIANTS else "model"

    def baseline(self) -> GroupedLastK:
        """The baseline of the chosen variant (last-2 for every boosting variant)."""
        return self.last10_ if self.variant_ == "last10" else self.last2_


def _is_work(column: str) -> bool:
    return column == "work" or column.rsplit(".", 1)[-1] in WORK_STATS


def _beyond(X: pd.DataFrame) -> np.ndarray:
    """Log of how far each task's work is beyond the largest its step has seen (0 within
    the range): trees cannot extrapolate, the step's growth line can."""
    if "work" not in X or "h.s.workmax" not in X:
        return np.zeros(len(X))
    work = X["work"].to_numpy(dtype="float64")
    largest = X["h.s.workmax"].to_numpy(dtype="float64")
    return np.asarray(np.log(np.maximum(ratio(work, largest), 1.0)), dtype="float64")


class _threads:
    """Limit OpenMP/BLAS threads inside a block (no-op for ``None``)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._ctl: Any = None

    def __enter__(self) -> None:
        if self.limit is not None:
            from threadpoolctl import threadpool_limits

            self._ctl = threadpool_limits(limits=self.limit)

    def __exit__(self, *exc: object) -> None:
        if self._ctl is not None:
            self._ctl.restore_original_limits()
            self._ctl = None


@dataclass
class ModelBundle:
    """What the registry stores for a pipeline: the model and its online bound state.

    ``trained_until`` is the last finish time (epoch seconds) of the training attempts:
    the predictor feeds the attempts that finished after it to the bound before use.
    """

    model: DurationModel
    quantile: float
    trained_until: float
    rows: int
    features: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
