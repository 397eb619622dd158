"""Training a pipeline's duration model: evaluate on a holdout, fit on everything, save.

:func:`train_pipeline` is what ``planner train`` and the nightly job run:

1. time-ordered evaluation on the last ``holdout`` of the attempts
   (:func:`~planner.learning.evaluation.evaluate`): the model against ``last2``,
   ``last10`` and the flat ``last10_x1.2`` rule;
2. a fit on every finished attempt (gradient boosting when there are at least
   ``min_model_rows`` attempts, else the baselines only, and it says so);
3. a save through the registry, with a card (kind, variant, features, training span and
   rows, holdout metrics, quantile); the registry records the file's digest in its ledger
   (the history database), without which the model would never be loaded;
4. promotion: the new model becomes current unless the current one is better on the
   recent holdout, i.e. the test attempts that started after the current model's training
   data ended (both predict them without having seen them). The result says which one
   was kept and why.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import ModelError, UsageError
from planner.learning.evaluation import (
    METHODS,
    MIN_MODEL_ROWS,
    Evaluation,
    evaluate,
    scored_attempts,
)
from planner.learning.features import attempt_features, to_seconds
from planner.learning.models import DurationModel, ModelBundle, point_scores
from planner.learning.registry import Registry

__all__ = [
    "MIN_COMPARE_ROWS",
    "MIN_MODEL_ROWS",
    "PROMOTE_TOLERANCE",
    "TrainingResult",
    "train_pipeline",
]

#: Fewer fresh holdout attempts than this: the current model cannot be judged, replace it.
MIN_COMPARE_ROWS = 20
#: "Not worse": the new model's MdAPE and MAE ratios to the current one sum to at most
#: 2 x (1 + this), so that noise alone does not keep an older model live.
PROMOTE_TOLERANCE = 0.01
_METRIC_KEYS = ("mae_s", "mdape", "mean_abs_log", "overrun", "median_bound_ratio")


@dataclass
class TrainingResult:
    """What one training did: holdout figures, the saved model and what is live now."""

    pipeline: str
    rows_train: int
    rows_test: int
    methods: dict[str, dict[str, float | None]]
    model_id: str
    current_id: str
    promoted: bool
    baselines_only: bool
    variant: str
    seconds: float
    messages: list[str] = field(default_factory=list)
    evaluation: Evaluation | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``planner train --json`` document of this pipeline."""
        return {
            "pipeline": self.pipeline,
            "rows": {"train": self.rows_train, "test": self.rows_test},
            "methods": self.methods,
            "model_id": self.model_id,
        }


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _methods_json(ev: Evaluation | None) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name in METHODS:
        scores = ev.methods.get(name, {}) if ev else {}
        out[name] = {k: _clean(scores.get(k, float("nan"))) for k in _METRIC_KEYS}
    return out


def _compare(
    registry: Registry,
    pipeline: str,
    ev: Evaluation,
    data: pd.DataFrame,
    features: pd.DataFrame,
) -> tuple[bool, str]:
    """(promote the new model?, why) against the current model on the recent holdout."""
    current = registry.current_id(pipeline)
    if current is None:
        return True, "no current model: the new one is live"
    try:
        loaded = registry.load(pipeline, current)
    except ModelError as exc:
        return True, f"current model {current} cannot be loaded ({exc.what}): replaced"
    bundle = loaded.obj
    if not isinstance(bundle, ModelBundle) or ev.model is None:
        return True, f"current model {current} is not a duration model bundle: replaced"
    if ev.test_mask is None or len(ev.test_mask) != len(data):
        return True, f"no holdout to compare with current model {current}: replaced"
    fresh = ev.test_mask & (to_seconds(data["started_at"]) > bundle.trained_until)
    if int(fresh.sum()) < MIN_COMPARE_ROWS:
        return True, (
            f"only {int(fresh.sum())} holdout attempts are newer than current model "
            f"{current}: too few to judge it, the new model is live"
        )
    X = features.loc[fresh]
    y = data["duration_s"].to_numpy(dtype="float64")[fresh]
    new_mdape, new_mae = point_scores(y, ev.model.predict(X))
    cur_mdape, cur_mae = point_scores(y, bundle.model.predict(X))
    new_score = new_mdape / max(cur_mdape, 1e-12) + new_mae / max(cur_mae, 1e-12)
    detail = (
        f"on {int(fresh.sum())} recent holdout attempts: new MdAPE {new_mdape:.1%} "
        f"MAE {new_mae:,.0f} s, current MdAPE {cur_mdape:.1%} MAE {cur_mae:,.0f} s"
    )
    if new_score <= 2.0 * (1.0 + PROMOTE_TOLERANCE):
        return True, f"new model is not worse than current {current} {detail}: new is live"
    return False, f"current model {current} is better {detail}: kept current"


def train_pipeline(
    frame: pd.DataFrame,
    *,
    pipeline: str,
    registry: Registry,
    holdout: float = 0.3,
    quantile: float = 0.95,
    min_model_rows: int = MIN_MODEL_ROWS,
    model_params: dict[str, Any] | None = None,
) -> TrainingResult:
    """Evaluate, fit on everything, save and (maybe) promote; ``frame`` is one pipeline's.

    ``registry`` must have a ledger (the history store the attempts came from): saving
    records the model's digest there, and only recorded models are ever loaded."""
    if not 0.0 < holdout < 1.0:
        raise UsageError("--holdout", f"must be a fraction in (0, 1), got {holdout}")
    if not 0.0 < quantile < 1.0:
        raise UsageError("--quantile", f"must be in (0, 1), got {quantile}")
    started = time.perf_counter()
    messages: list[str] = []
    params = dict(model_params or {})
    features_all = attempt_features(frame)
    data = scored_attempts(frame)
    if data.empty:
        raise UsageError(pipeline, "no finished attempt with a duration > 0 to learn from")
    features = features_all.loc[data.index].reset_index(drop=True)
    data = data.reset_index(drop=True)

    def make(hgb: bool) -> DurationModel:
        return DurationModel(quantile=quantile, use_hgb=hgb, **params)

    ev: Evaluation | None = None
    try:
        ev = evaluate(
            frame,
            holdout=holdout,
            quantile=quantile,
            min_model_rows=min_model_rows,
            make_model=make,
            features=features_all,
        )
        messages.append(
            f"holdout bounds: adaptive conformal level clamped {ev.clamped} of "
            f"{ev.rows_test} times (alpha_t <= 0: the largest recent score was used)"
        )
    except ValueError as exc:
        messages.append(f"no holdout evaluation: {exc}")
    use_hgb = len(data) >= min_model_rows
    if not use_hgb:
        messages.append(
            f"only {len(data)} finished attempts (< {min_model_rows}): baselines only, "
            "with a conformal bound around them"
        )
    y = data["duration_s"].to_numpy(dtype="float64")
    model = make(use_hgb).fit(features, y)
    finish = to_seconds(data["finished_at"])
    bundle = ModelBundle(
        model=model,
        quantile=quantile,
        trained_until=float(np.nanmax(finish)),
        rows=len(data),
        features=list(model.feature_names_),
        notes=list(messages),
    )
    methods = _methods_json(ev)
    card = {
        "kind": "model" if use_hgb else "baselines",
        "variant": model.variant_,
        "features": list(model.feature_names_),
        "training": {
            "start": data["started_at"].iloc[0].isoformat(),
            "end": data["finished_at"].max().isoformat(),
            "rows": len(data),
        },
        "holdout": {
            "fraction": holdout,
            "rows": {"train": ev.rows_train if ev else 0, "test": ev.rows_test if ev else 0},
        },
        "metrics": methods,
        "quantile": quantile,
        "notes": messages,
    }
    model_id = registry.save(pipeline, bundle, card)
    if ev is not None:
        promote, why = _compare(registry, pipeline, ev, data, features)
    else:
        current = registry.current_id(pipeline)
        promote = current is None
        why = (
            "no current model: the new one is live"
            if promote
            else f"no holdout to judge the new model: kept current {current}"
        )
    if promote:
        registry.promote(pipeline, model_id)
    messages.append(why)
    current_id = registry.current_id(pipeline) or model_id
    return TrainingResult(
        pipeline=pipeline,
        rows_train=ev.rows_train if ev else len(data),
        rows_test=ev.rows_test if ev else 0,
        methods=methods,
        model_id=model_id,
        current_id=current_id,
        promoted=promote,
        baselines_only=not use_hgb,
        variant=model.variant_,
        seconds=time.perf_counter() - started,
        messages=messages,
        evaluation=ev,
    )
