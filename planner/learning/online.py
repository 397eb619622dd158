"""The bounds planner would have issued at each attempt's start, replayed over a history.

:func:`causal_bounds` is the planner's bound machinery run causally over a recorded
history, for simulations of schedule policies (``planner simulate``): the duration model
(:class:`~planner.learning.models.DurationModel`: gradient boosting over the leak-free
features of :func:`~planner.learning.features.attempt_features`, conformalized quantile
regression) is fitted on the attempts **finished** before ``split_at``; every attempt that
starts at or after ``split_at`` gets the bound issued at its start, the adaptive conformal
state being updated online only with the attempts finished before that start
(:func:`~planner.learning.evaluation.online_bounds`, exactly as in ``planner train``'s
holdout). With ``refits > 1`` the model is refitted that many times along the way (as a
nightly retraining would), each time on the attempts finished by then.

Nothing an attempt's bound depends on finished after its start: the features see only
attempts finished before it, the model only attempts finished before the fit time (itself
before the start), the online calibration only attempts finished before the start.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pandas as pd

from planner.learning.evaluation import MIN_MODEL_ROWS, online_bounds
from planner.learning.features import attempt_features, to_seconds
from planner.learning.growth import fit_growth
from planner.learning.models import DurationModel

__all__ = ["MIN_MODEL_ROWS", "causal_bounds"]

#: Durations are floored at this many seconds inside the online calibration (log scores).
_FLOOR_S = 1e-3


def causal_bounds(
    frame: pd.DataFrame,
    split_at: float,
    *,
    quantile: float = 0.95,
    refits: int = 1,
    min_model_rows: int = MIN_MODEL_ROWS,
) -> np.ndarray:
    """Bound (seconds) issued at the start of each attempt of ``frame`` starting at or after
    ``split_at`` (epoch seconds); NaN for earlier attempts and when nothing had finished.

    ``frame`` is an attempts frame (the history contract's columns; ``n_accounts``,
    ``concurrency`` may be absent) in which every row has ``started_at``, ``finished_at``
    and ``duration_s >= 0``. The result is aligned with the rows of ``frame``.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    if refits < 1:
        raise ValueError(f"refits must be >= 1, got {refits!r}")
    n = len(frame)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    order = np.argsort(to_seconds(frame["started_at"]), kind="stable")
    data = frame.iloc[order].reset_index(drop=True)
    started = to_seconds(data["started_at"])
    finished = to_seconds(data["finished_at"])
    y = data["duration_s"].to_numpy(dtype="float64")
    if np.isnan(started).any() or np.isnan(finished).any() or not (y >= 0).all():
        raise ValueError("every attempt needs started_at, finished_at and a duration >= 0")
    first = int(np.searchsorted(started, split_at, side="left"))
    if first >= n:
        return out
    # how durations grow with size, from the runs finished before the first decision only
    # (one that started before it may still be running: its duration is not known yet)
    features = attempt_features(data, fit_growth(data.loc[finished < split_at]))
    cuts = [
        started[first + (n - first) * j // refits]
        for j in range(refits)
        if first + (n - first) * j // refits < n
    ]
    cuts = [*sorted(set(cuts)), math.inf]
    sorted_bounds = np.full(n, np.nan)
    for lo, hi in itertools.pairwise(cuts):
        part = (started >= lo) & (started < hi)
        train = (finished < lo) & (y > 0)
        if not train.any() or not part.any():
            continue
        model = DurationModel(quantile=quantile, use_hgb=int(train.sum()) >= min_model_rows)
        model.fit(features.loc[train], y[train])
        point_log, center = model.predict_both(features.loc[part])
        conformal = copy.deepcopy(model.conformal_)
        sorted_bounds[part] = online_bounds(
            conformal,
            center,
            point_s=np.exp(point_log),
            started=started[part],
            finished=finished[part],
            actual=np.maximum(y[part], _FLOOR_S),
        )
    out[order] = sorted_bounds
    return out
