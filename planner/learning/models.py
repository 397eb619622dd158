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
   baselines are candidates and the bound is conformal around the chosen baseline.

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
from planner.learning.conformal import AdaptiveConformal

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
        (fewer iterations: faster predictions)
    quantile_residual : True: the quantile model learns log(actual / grouped last-2 mean),
        an easier target that needs fewer trees where the last-2 mean is good; False: it
        learns log(actual); None: both are fitted, the tighter on the validation slice kept
    validation_fraction : last part of the rows used to pick the variant and calibrate
    gamma, window : ACI step size and score window of the bound
    prefer_margin : the ensemble is kept unless a variant scores this much better
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
        quantile_learning_rate: float = 0.2,
        quantile_residual: bool | None = None,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 20,
        validation_fraction: float = 0.2,
        gamma: float = 0.005,
        window: int = 5000,
        prefer_margin: float = 0.03,
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
        self.feature_names_ = [str(c) for c in X.columns if X[c].nunique(dropna=True) >= 2]
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
            if self.use_hgb and n_val > 0:
                self.quantile_model_, self.quantile_residual_, center = self._fit_quantile(
                    M, logy, head, tail
                )
            else:
                center = np.log(candidates[self.variant_]) if n_val > 0 else np.zeros(0)
        scores = logy[tail] - center if n_val > 0 else np.zeros(0)
        if n_val == 0 or len(scores) < 5:
            # too little to calibrate on a slice: use every row that had history
            base = self.last2_ if self.variant_ == "last2" else self.last10_
            scores = logy - np.log(base.predict(X))
        self.conformal_ = AdaptiveConformal(
            quantile=self.quantile, gamma=self.gamma, window=self.window
        ).calibrate(scores.tolist())
        return self

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
        """Log-scale center of the bound: the quantile model, else the point prediction."""
        if self.quantile_model_ is None and point_log is not None:
            return point_log
        return self.predict_both(X)[1]

    def predict_both(self, X: pd.DataFrame, center: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(log point prediction, log center of the bound) in one pass over ``X``."""
        log_b2 = np.log(self.last2_.predict(X))
        log_b10 = np.log(self.last10_.predict(X))
        variant = self.variant_
        boosted = variant in ("hgb", "residual", "ensemble")
        need_matrix = boosted or (center and self.quantile_model_ is not None)
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
            if not center:
                return point, point
            if self.quantile_model_ is None:
                return point, point
            q = np.asarray(self.quantile_model_.predict(M), dtype="float64")
            return point, q + log_b2 if self.quantile_residual_ else q

    def source(self) -> str | None:
        """``"model"`` for a boosting variant, else None (the baseline names its group)."""
        return None if self.variant_ in _BASELINE_VARIANTS else "model"

    def baseline(self) -> GroupedLastK:
        """The baseline of the chosen variant (last-2 for every boosting variant)."""
        return self.last10_ if self.variant_ == "last10" else self.last2_


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
