"""Training a pipeline's duration model: evaluate on a holdout, fit on everything, save.

:func:`train_pipeline` is what ``planner train`` and the nightly job run:

1. time-ordered evaluation on the last ``holdout`` of the attempts
   (:func:`~planner.learning.evaluation.evaluate`): the model against ``last2``,
   ``last10`` and the flat ``last10_x1.2`` rule;
2. what serves (:func:`judge`): the model only when it is not worse than the best
   grouped baseline on the holdout (:func:`model_not_worse`), else that baseline; the
   bound of the served method when its holdout overrun is within
   :data:`BOUND_TOLERANCE` x its target, else another method's bound that is (the
   tightest), else the served method's own, flagged (``bound_ok: false``);
3. a fit on every finished attempt of what serves (gradient boosting when there are at
   least ``min_model_rows`` attempts, else the baselines only, and it says so; a baseline
   serves as ``DurationModel(use_hgb=False, variant=...)``, exactly as it was scored);
4. a save through the registry, with a card (kind, variant, features, training span and
   rows, holdout metrics, quantile, ``serving`` and the bound's fields, see
   :func:`bound_warning`); the registry records the file's digest in its ledger (the
   history database), without which the model would never be loaded;
5. promotion: the new model becomes current unless the current one is better on the
   recent holdout, i.e. the test attempts that started after the current model's training
   data ended (both predict them without having seen them). The result says which one
   was kept and why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
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
from planner.learning.growth import fit_growth
from planner.learning.models import DurationModel, ModelBundle, point_scores
from planner.learning.registry import Registry, bound_warning
from planner.units import format_duration

__all__ = [
    "BOUND_TOLERANCE",
    "GATE_METRIC_TOLERANCE",
    "MIN_COMPARE_ROWS",
    "MIN_MODEL_ROWS",
    "PROMOTE_TOLERANCE",
    "Serving",
    "TrainingResult",
    "bound_warning",
    "holdout_evaluation",
    "judge",
    "model_not_worse",
    "train_pipeline",
]

#: Fewer fresh holdout attempts than this: the current model cannot be judged, replace it.
MIN_COMPARE_ROWS = 20
#: "Not worse": the new model's MdAPE and MAE ratios to the current one sum to at most
#: 2 x (1 + this), so that noise alone does not keep an older model live.
PROMOTE_TOLERANCE = 0.01
#: Against the best baseline, neither MdAPE nor MAE may be more than this much worse.
GATE_METRIC_TOLERANCE = 0.05
#: A bound is far from its target when its holdout overrun exceeds this many times the
#: target ``1 - quantile`` (15 % at quantile 0.95).
BOUND_TOLERANCE = 3.0
_METRIC_KEYS = ("mae_s", "mdape", "mean_abs_log", "overrun", "median_bound_ratio")
_BASELINES = ("last2", "last10")


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
    serving: Serving | None = None
    bound_warning: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``planner train --json`` document of this pipeline."""
        doc: dict[str, Any] = {
            "pipeline": self.pipeline,
            "rows": {"train": self.rows_train, "test": self.rows_test},
            "methods": self.methods,
            "model_id": self.model_id,
        }
        if self.serving is not None:
            doc["serving"] = {"method": self.serving.method, "reason": self.serving.reason}
            doc["bound"] = {**self.serving.card_fields(), "warning": self.bound_warning}
        ev = self.evaluation
        if ev is not None:  # the test attempts beyond the sizes their step had seen
            doc["extrapolated"] = {
                "attempts": ev.extrapolated,
                "methods": ev.extrapolated_methods or {},
            }
        return doc


@dataclass(frozen=True)
class Serving:
    """What serves after the holdout: the point method, the bound's method, and why.

    Methods are ``"model"``, ``"last2"``, ``"last10"`` (the rows of the holdout table).
    ``bound_ok`` is None when there was no holdout to judge the bound."""

    method: str
    reason: str
    bound_source: str
    bound_ok: bool | None
    bound_overrun: float | None
    bound_ratio: float | None
    bound_target: float
    bound_note: str | None = None

    def card_fields(self) -> dict[str, Any]:
        """The card's bound fields (read back by :func:`bound_warning`)."""
        return {
            "bound_source": self.bound_source,
            "bound_ok": self.bound_ok,
            "bound_overrun": self.bound_overrun,
            "bound_ratio": self.bound_ratio,
            "bound_target": self.bound_target,
            "bound_note": self.bound_note,
        }

    def model_overrides(self) -> dict[str, Any]:
        """The ``DurationModel`` parameters that make it serve this (beyond use_hgb)."""
        own = self.method
        bound = None if self.bound_source == own else self.bound_source
        if own == "model":
            return {"bound": bound}
        return {"use_hgb": False, "variant": own, "bound": bound}


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def model_not_worse(
    methods: Mapping[str, Mapping[str, float]],
) -> tuple[bool, str, str]:
    """(is the model not worse than the best grouped baseline?, that baseline, detail).

    On the holdout, each method's score is the one :class:`DurationModel` picks its
    variant by: ``MdAPE / ref_MdAPE + MAE / ref_MAE``, where ``ref_`` is the better of
    ``last2`` and ``last10`` on that metric (2.0 for a baseline best on both). The best
    baseline is the one with the lower score. The model is **not worse** when both

    - its score is at most the best baseline's x (1 + :data:`PROMOTE_TOLERANCE`), and
    - neither its MdAPE nor its MAE is more than :data:`GATE_METRIC_TOLERANCE` (5 %) above
      ``ref_`` on that metric (a model may not buy one metric with the other).

    A metric that cannot be computed (no holdout) counts as not worse.
    """
    base = {b: methods[b] for b in _BASELINES if b in methods}
    model = methods.get("model", {})
    values = [m.get(k) for m in (model, *base.values()) for k in ("mdape", "mae_s")]
    if not base or any(v is None or not math.isfinite(v) for v in values):
        return True, "last2", "no holdout scores to compare"
    ref_mdape = max(min(m["mdape"] for m in base.values()), 1e-12)
    ref_mae = max(min(m["mae_s"] for m in base.values()), 1e-12)

    def score(m: Mapping[str, float]) -> float:
        return m["mdape"] / ref_mdape + m["mae_s"] / ref_mae

    best = min(base, key=lambda b: (score(base[b]), b))
    b = base[best]
    detail = (
        f"MdAPE {_pct(model['mdape'])} vs {_pct(b['mdape'])}, "
        f"MAE {format_duration(model['mae_s'])} vs {format_duration(b['mae_s'])}"
    )
    ok = (
        score(model) <= score(b) * (1.0 + PROMOTE_TOLERANCE)
        and model["mdape"] <= ref_mdape * (1.0 + GATE_METRIC_TOLERANCE)
        and model["mae_s"] <= ref_mae * (1.0 + GATE_METRIC_TOLERANCE)
    )
    return ok, best, detail


def _bound_ok(scores: Mapping[str, float], target: float) -> bool | None:
    overrun = scores.get("overrun")
    if overrun is None or not math.isfinite(overrun):
        return None
    return bool(overrun <= BOUND_TOLERANCE * target + 1e-12)


def judge(ev: Evaluation | None, quantile: float) -> Serving:
    """What serves, from the holdout (:func:`model_not_worse`, then the bound: the served
    method's own when its overrun is at most :data:`BOUND_TOLERANCE` x the target, else
    the tightest (lowest median bound/actual) of the other methods' bounds that are, else
    the served method's own, flagged ``bound_ok=False``)."""
    target = round(1.0 - quantile, 12)
    if ev is None:
        return Serving("model", "no holdout to judge the model", "model", None, None, None, target)
    methods = ev.methods
    ok, best, detail = model_not_worse(methods)
    if ok:
        method = "model"
        reason = f"model not worse than {best} on the holdout ({detail}): the model serves"
    else:
        method = best
        reason = f"model worse than {best} on the holdout: {detail}; {best} serves"
    # bounds the served method can use: its own, or a grouped baseline's
    sources = [method, *(b for b in _BASELINES if b != method)]
    status = {m: _bound_ok(methods[m], target) for m in sources}
    chosen = method
    note: str | None = None
    own = methods[method]
    if status[method] is False:
        good = [m for m in sources if status[m]]
        if good:
            chosen = min(good, key=lambda m: methods[m]["median_bound_ratio"])
            c = methods[chosen]
            note = (
                f"{method}'s bound overran {_pct(own['overrun'])} of the holdout (target "
                f"{_pct(target)}, bound/actual {own['median_bound_ratio']:.2f}): {chosen}'s "
                f"bound serves (overran {_pct(c['overrun'])}, bound/actual "
                f"{c['median_bound_ratio']:.2f})"
            )
        else:
            overran = ", ".join(f"{m} {_pct(methods[m]['overrun'])}" for m in sources)
            note = (
                f"no bound met its target on the holdout (target {_pct(target)}; overran: "
                f"{overran}, each above {_pct(BOUND_TOLERANCE * target)}): planning has no "
                "calibrated bound"
            )
    c = methods[chosen]
    return Serving(
        method=method,
        reason=reason,
        bound_source=chosen,
        bound_ok=status[chosen],
        bound_overrun=_clean(c["overrun"]),
        bound_ratio=_clean(c["median_bound_ratio"]),
        bound_target=target,
        bound_note=note,
    )


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
    *,
    method: str,
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
    if not isinstance(bundle, ModelBundle) or method not in ev.predictions:
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
    new_pred = ev.predictions[method][0][fresh[ev.test_mask]]
    new_mdape, new_mae = point_scores(y, new_pred)
    cur_mdape, cur_mae = point_scores(y, bundle.model.predict(X))
    new_score = new_mdape / max(cur_mdape, 1e-12) + new_mae / max(cur_mae, 1e-12)
    detail = (
        f"on {int(fresh.sum())} recent holdout attempts: new MdAPE {new_mdape:.1%} "
        f"MAE {new_mae:,.0f} s, current MdAPE {cur_mdape:.1%} MAE {cur_mae:,.0f} s"
    )
    if new_score <= 2.0 * (1.0 + PROMOTE_TOLERANCE):
        return True, f"new model is not worse than current {current} {detail}: new is live"
    return False, f"current model {current} is better {detail}: kept current"


def holdout_evaluation(
    frame: pd.DataFrame,
    *,
    holdout: float = 0.3,
    quantile: float = 0.95,
    min_model_rows: int = MIN_MODEL_ROWS,
    model_params: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Step 1 of :func:`train_pipeline`: the model against the baselines on the last
    ``holdout`` of ``frame``'s attempts (:func:`~planner.learning.evaluation.evaluate`).

    The holdout judges the kind of model that would serve: boosted when ``frame`` has at
    least ``min_model_rows`` scored attempts, even when its training part has fewer.
    Raises ``ValueError`` when there are too few attempts for a past and a test part."""
    params = dict(model_params or {})

    def make(hgb: bool) -> DurationModel:
        return DurationModel(**{"quantile": quantile, "use_hgb": hgb, **params})

    return evaluate(
        frame,
        holdout=holdout,
        quantile=quantile,
        min_model_rows=min_model_rows,
        make_model=make,
        use_hgb=len(scored_attempts(frame)) >= min_model_rows,
    )


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
    features_all = attempt_features(frame, fit_growth(frame))
    data = scored_attempts(frame)
    if data.empty:
        raise UsageError(pipeline, "no finished attempt with a duration > 0 to learn from")
    features = features_all.loc[data.index].reset_index(drop=True)
    data = data.reset_index(drop=True)

    def make(hgb: bool, **overrides: Any) -> DurationModel:
        settings = {"quantile": quantile, "use_hgb": hgb, **params, **overrides}
        return DurationModel(**settings)

    use_hgb = len(data) >= min_model_rows
    ev: Evaluation | None = None
    try:
        ev = holdout_evaluation(
            frame,
            holdout=holdout,
            quantile=quantile,
            min_model_rows=min_model_rows,
            model_params=params,
        )
        messages.append(
            f"holdout bounds: adaptive conformal level clamped {ev.clamped} of "
            f"{ev.rows_test} times (alpha_t <= 0: the largest recent score was used)"
        )
        messages.extend(_holdout_notes(ev))
    except ValueError as exc:
        messages.append(f"no holdout evaluation: {exc}")
    serving = judge(ev, quantile)
    messages.append(serving.reason)
    if serving.bound_note:
        messages.append(serving.bound_note)
    if not use_hgb:
        messages.append(
            f"only {len(data)} finished attempts (< {min_model_rows}): baselines only, "
            "with a conformal bound around them"
        )
    overrides = serving.model_overrides()
    use_hgb = use_hgb and overrides.pop("use_hgb", True)
    y = data["duration_s"].to_numpy(dtype="float64")
    model = make(use_hgb, **overrides).fit(features, y)
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
        "serving": {"method": serving.method, "reason": serving.reason},
        **serving.card_fields(),
        "notes": messages,
    }
    model_id = registry.save(pipeline, bundle, card)
    warning = bound_warning({**card, "model_id": model_id})
    if ev is not None:
        promote, why = _compare(registry, pipeline, ev, data, features, method=serving.method)
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
        serving=serving,
        bound_warning=warning,
    )


def _holdout_notes(ev: Evaluation) -> list[str]:
    """What limited the holdout bounds: feedback that could not arrive in time."""
    notes = []
    if ev.unfed > 0.1 * ev.rows_test:
        notes.append(
            f"holdout bounds: {ev.unfed} of {ev.rows_test} test attempts started before any "
            "attempt finished after the split (jobs long against the holdout span): their "
            "bounds came from the calibration alone, no online feedback"
        )
    outside = ev.extrapolated_methods
    if outside:
        served = outside.get("model") or {}
        overrun, mdape = served.get("overrun"), served.get("mdape")
        if overrun is not None and mdape is not None:
            notes.append(
                f"holdout: {ev.extrapolated} test attempt(s) were beyond the largest size "
                f"their step had seen; there the model's MdAPE was {mdape:.1%} and its "
                f"bound overran {overrun:.1%}"
            )
    return notes
