"""Honest, time-ordered evaluation of the duration model against the baselines.

``--holdout F`` takes the last F of the attempts, ordered by start time, as the test part.
The model is fitted on the training attempts that had **finished** when the first test
attempt started; each test attempt is predicted at its start from its features (which
only use attempts finished by then), and the bounds are adapted online only with attempts
finished by then (:func:`online_bounds`): the test attempts and those that started before
the first test start but finished after it (in flight at the split: the predictor of a
model trained then would see them finish too; they are fed, not scored). Every attempt
with a duration > 0 is trained on and scored, whatever its status.

Methods: ``model`` (the :class:`~planner.learning.models.DurationModel`), ``last2`` and
``last10`` (grouped baselines: the same estimator with ``use_hgb=False`` and that variant,
i.e. exactly what ``planner train`` serves when the model is worse; their bounds are
calibrated like the model's),
and ``last10_x1.2`` (the flat rule: prediction and bound are 1.2 x the last-10 mean).
Metrics: MAE (s), MdAPE, mean |log(pred/actual)|, overrun rate (actual > bound) and the
median bound/actual; overall, for each half of the test part and per step. Rates are
fractions.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from planner.learning.conformal import KEEP_MARGIN, AdaptiveConformal
from planner.learning.features import attempt_features, finished_attempts, to_seconds
from planner.learning.growth import fit_growth
from planner.learning.models import DurationModel

__all__ = [
    "METHODS",
    "MIN_MODEL_ROWS",
    "Evaluation",
    "HoldoutSplit",
    "evaluate",
    "holdout_features",
    "holdout_split",
    "metrics",
    "online_bounds",
    "scored_attempts",
]

METHODS = ("model", "last2", "last10", "last10_x1.2")
#: The grouped baselines, scored (and served) as ``DurationModel(use_hgb=False, variant=..)``.
_BASELINES = ("last2", "last10")
#: Fewer training attempts than this: baselines only, no gradient boosting (the one
#: threshold of ``planner train``, its holdout and ``planner simulate``).
MIN_MODEL_ROWS = 200
_FLAT_FACTOR = 1.2


def metrics(actual: np.ndarray, pred: np.ndarray, bound: np.ndarray) -> dict[str, float]:
    """The point and bound metrics of one method on some attempts (NaN when empty)."""
    actual = np.asarray(actual, dtype="float64")
    pred = np.asarray(pred, dtype="float64")
    bound = np.asarray(bound, dtype="float64")
    n = len(actual)
    if n == 0:
        nan = float("nan")
        return {
            "mae_s": nan,
            "mdape": nan,
            "mean_abs_log": nan,
            "overrun": nan,
            "median_bound_ratio": nan,
            "n": 0,
        }
    err = np.abs(pred - actual)
    return {
        "mae_s": float(np.mean(err)),
        "mdape": float(np.median(err / actual)),
        "mean_abs_log": float(np.mean(np.abs(np.log(pred / actual)))),
        "overrun": float(np.mean(actual > bound)),
        "median_bound_ratio": float(np.median(bound / actual)),
        "n": n,
    }


def scored_attempts(frame: pd.DataFrame) -> pd.DataFrame:
    """Attempts that are trained on and scored (finished, duration > 0), by start time."""
    done = finished_attempts(frame)
    return done.sort_values("started_at", kind="stable")


def holdout_split(frame: pd.DataFrame, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks (train, test) over ``frame`` (sorted by start): the test part is the last
    ``holdout`` of the rows; train keeps the earlier rows finished before the first test
    start."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout!r}")
    n = len(frame)
    n_test = min(max(math.ceil(n * holdout), 1), max(n - 1, 0))
    test = np.arange(n) >= n - n_test
    if not test.any():
        return np.zeros(n, dtype=bool), test
    split_t = to_seconds(frame["started_at"])[test][0]
    finished = to_seconds(frame["finished_at"])
    train = ~test & (finished < split_t)
    return train, test


@dataclass(frozen=True)
class HoldoutSplit:
    """The scored attempts of a frame split for a holdout, with their features.

    ``data``: the scored attempts by start time (index reset); ``features``: their
    leak-free features, with the growth of durations fitted on the training part only;
    ``train`` and ``test``: the masks of :func:`holdout_split` over those rows."""

    data: pd.DataFrame
    features: pd.DataFrame
    train: np.ndarray
    test: np.ndarray

    @property
    def actual(self) -> np.ndarray:
        """The durations of the rows, in seconds."""
        return np.asarray(self.data["duration_s"].to_numpy(dtype="float64"))


def holdout_features(frame: pd.DataFrame, holdout: float) -> HoldoutSplit:
    """The rows, masks and features :func:`evaluate` fits on and scores (also for the
    analysis of a holdout, e.g. permutation importance on its test part)."""
    data = scored_attempts(frame)
    train, test = holdout_split(data.reset_index(drop=True), holdout)
    growth = fit_growth(data.loc[data.index[train]])
    features = attempt_features(frame, growth).loc[data.index]
    return HoldoutSplit(
        data=data.reset_index(drop=True),
        features=features.reset_index(drop=True),
        train=train,
        test=test,
    )


def online_bounds(
    conformal: AdaptiveConformal,
    center_log: np.ndarray,
    *,
    point_s: np.ndarray,
    started: np.ndarray,
    finished: np.ndarray,
    actual: np.ndarray,
    drain: bool = False,
) -> np.ndarray:
    """Bounds issued at each start, updating ``conformal`` with the attempts finished by then.

    The rows are attempts in start order; ``conformal`` is updated in place (a row's score
    and overrun are fed once it has finished before the start being predicted). ``drain``
    feeds the rows still unfed at the end too (all of them have finished). A bound is
    :func:`~planner.learning.conformal.bound_log` of the row's center and point at the
    offset of the moment: never below the point, above it whenever the center is.
    """
    n = len(point_s)
    bounds = np.empty(n)
    by_finish = np.argsort(finished, kind="stable")
    j = 0
    for i in range(n):
        while j < n and finished[by_finish[j]] < started[i]:
            r = by_finish[j]
            conformal.update(math.log(actual[r]) - center_log[r], bool(actual[r] > bounds[r]))
            j += 1
        offset = conformal.offset()
        point_log = math.log(point_s[i]) if point_s[i] > 0 else -math.inf
        floor = point_log + KEEP_MARGIN * max(center_log[i] - point_log, 0.0)
        bound_log = max(center_log[i] + offset, floor)
        bounds[i] = max(math.exp(min(bound_log, 700.0)), point_s[i])
        if bound_log <= point_log:  # exactly the point (exp(log(p)) may differ from p)
            bounds[i] = point_s[i]
    while drain and j < n:
        r = by_finish[j]
        conformal.update(math.log(actual[r]) - center_log[r], bool(actual[r] > bounds[r]))
        j += 1
    return bounds


@dataclass
class Evaluation:
    """The result of one time-ordered evaluation."""

    rows_train: int
    rows_test: int
    methods: dict[str, dict[str, float]]
    halves: list[dict[str, dict[str, float]]]
    per_step: dict[str, dict[str, dict[str, float]]]
    variant: str
    baselines_only: bool
    model: DurationModel | None = None
    clamped: int = 0
    test_mask: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: method -> (point, bound) of every test attempt, in start order
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: test attempts that started before any attempt finished after the split (their
    #: bounds could not adapt online: the calibration alone set them)
    unfed: int = 0
    #: attempts in flight at the split (fed to the online bounds, not scored)
    in_flight: int = 0
    #: the test attempts whose size was beyond the largest their step had seen before
    #: they started, and every method's metrics on them alone (None: there was none)
    extrapolated: int = 0
    extrapolated_methods: dict[str, dict[str, float]] | None = None


def _method_bounds(
    model: DurationModel,
    X: pd.DataFrame,
    *,
    started: np.ndarray,
    finished: np.ndarray,
    actual: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, AdaptiveConformal]:
    """(point, bound issued at each start, the conformal state after) of a fitted model
    over rows in start order."""
    point_log, center = model.predict_both(X)
    point = np.exp(point_log)
    conformal = copy.deepcopy(model.conformal_)
    bounds = online_bounds(
        conformal, center, point_s=point, started=started, finished=finished, actual=actual
    )
    return point, bounds, conformal


def evaluate(
    frame: pd.DataFrame,
    *,
    holdout: float = 0.3,
    quantile: float = 0.95,
    min_model_rows: int = MIN_MODEL_ROWS,
    make_model: Callable[[bool], DurationModel] | None = None,
    features: pd.DataFrame | None = None,
    use_hgb: bool | None = None,
) -> Evaluation:
    """Fit on the past part of ``frame``, score every method on the holdout.

    The features are computed here, with the growth of durations with size fitted on the
    past part only (an honest holdout: the test part's sizes and durations shape nothing);
    ``features`` is accepted for compatibility and not used. ``use_hgb``: whether the
    model is boosted (``planner train`` passes what the model it saves will be, so that the
    holdout judges that kind of model); ``None``: when the training part has at least
    ``min_model_rows`` attempts.
    """
    del features
    split = holdout_features(frame, holdout)
    data, features, train, test = split.data, split.features, split.train, split.test
    y = split.actual
    X_train, y_train = features.loc[train], y[train]
    test_rows = data.loc[test]
    if not train.any() or not test.any():
        raise ValueError("too few finished attempts for a holdout: need a past and a test part")
    if use_hgb is None:
        use_hgb = int(train.sum()) >= min_model_rows
    factory = make_model or (lambda hgb: DurationModel(quantile=quantile, use_hgb=hgb))
    model = factory(use_hgb).fit(X_train, y_train)
    # the online rows: the test part and the attempts in flight at the split, by start
    online = ~train
    scored = test[online]
    X_online, y_online = features.loc[online], y[online]
    started = to_seconds(data.loc[online, "started_at"])
    finished = to_seconds(data.loc[online, "finished_at"])
    y_test = y_online[scored]
    point, bounds, conformal = _method_bounds(
        model, X_online, started=started, finished=finished, actual=y_online
    )
    preds: dict[str, tuple[np.ndarray, np.ndarray]] = {"model": (point[scored], bounds[scored])}
    for name in _BASELINES:
        base = clone(model).set_params(use_hgb=False, variant=name, bound=None)
        base.fit(X_train, y_train)
        p, b, _ = _method_bounds(
            base, X_online, started=started, finished=finished, actual=y_online
        )
        preds[name] = (p[scored], b[scored])
    flat = preds["last10"][0] * _FLAT_FACTOR
    preds["last10_x1.2"] = (flat, flat)
    methods = {m: metrics(y_test, p, b) for m, (p, b) in preds.items()}
    half = len(y_test) // 2
    halves = [
        {m: metrics(y_test[sl], p[sl], b[sl]) for m, (p, b) in preds.items()}
        for sl in (slice(0, half), slice(half, None))
    ]
    steps = test_rows["step"].astype(str).to_numpy()
    per_step: dict[str, dict[str, dict[str, float]]] = {}
    for step in sorted(set(steps.tolist())):
        mask = steps == step
        per_step[step] = {m: metrics(y_test[mask], p[mask], b[mask]) for m, (p, b) in preds.items()}
    beyond = _beyond_seen(features.loc[test])
    outside = (
        {m: metrics(y_test[beyond], p[beyond], b[beyond]) for m, (p, b) in preds.items()}
        if beyond.any()
        else None
    )
    return Evaluation(
        rows_train=int(train.sum()),
        rows_test=int(test.sum()),
        methods=methods,
        halves=halves,
        per_step=per_step,
        variant=model.variant_,
        baselines_only=not use_hgb,
        model=model,
        clamped=conformal.clamped_,
        test_mask=test,
        extra={"validation": model.validation_, "calibration": model.class_calibration_},
        predictions=preds,
        unfed=_unfed(started[scored], finished),
        in_flight=int((~train & ~test).sum()),
        extrapolated=int(beyond.sum()),
        extrapolated_methods=outside,
    )


def _beyond_seen(X: pd.DataFrame) -> np.ndarray:
    """Rows whose work is beyond the largest their step had seen before they started."""
    work = X["work"].to_numpy(dtype="float64")
    largest = X["h.s.workmax"].to_numpy(dtype="float64")
    return np.asarray(np.isfinite(largest) & (work > largest * 1.001), dtype=bool)


def _unfed(test_started: np.ndarray, finished: np.ndarray) -> int:
    """How many test starts came before the first finish of the online rows."""
    first = float(np.min(finished)) if len(finished) else math.inf
    return int(np.sum(test_started <= first))
