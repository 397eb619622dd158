"""Train duration models and list them: the use cases behind ``planner train``,
``planner models`` and the demo's learning stage (and, next, the daemon's nightly job).

Models are saved in the instance's registry (``<state_dir>/models`` unless configured)
and their digests recorded in its history, so that only models trained here are loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.defaults import QUANTILE
from planner.errors import ModelError, UsageError

if TYPE_CHECKING:
    import pandas as pd

    from planner.learning.training import TrainingResult
    from planner.service.instance import Instance

__all__ = ["list_models", "train", "train_frame"]


def train_frame(
    instance: Instance,
    frame: pd.DataFrame,
    pipeline: str,
    *,
    holdout: float = 0.3,
    quantile: float = QUANTILE,
) -> TrainingResult:
    """Evaluate, fit, save and (maybe) promote the model of one pipeline's attempts."""
    from planner.learning.training import train_pipeline

    return train_pipeline(
        frame.reset_index(drop=True),
        pipeline=pipeline,
        registry=instance.registry(),
        holdout=holdout,
        quantile=quantile,
    )


def train(
    instance: Instance,
    pipeline: str | None = None,
    *,
    holdout: float = 0.3,
    quantile: float | None = None,
) -> list[TrainingResult]:
    """Train ``pipeline`` (a name in the history), or every pipeline of the history."""
    if not 0.0 < holdout < 1.0:
        raise UsageError("--holdout", f"must be a fraction in (0, 1), got {holdout}")
    q = QUANTILE if quantile is None else quantile
    if not 0.0 < q < 1.0:
        raise UsageError("--quantile", f"must be in (0, 1), got {q}")
    frame = instance.store.attempts_frame(pipeline)
    if frame.empty:
        where = f"pipeline {pipeline!r}" if pipeline else instance.url
        raise UsageError(where, f"no attempts in the history {instance.url} to train on")
    names = [pipeline] if pipeline else sorted(frame["pipeline"].dropna().unique().tolist())
    results = []
    for name in names:
        part = frame if pipeline else frame[frame["pipeline"] == name]
        results.append(train_frame(instance, part, str(name), holdout=holdout, quantile=q))
    return results


def list_models(
    instance: Instance | None,
    models_dir: Path,
    pipeline: str | None = None,
    *,
    verify: bool = False,
) -> list[dict[str, Any]]:
    """The models in ``models_dir`` (cards plus ``pipeline``, ``id``, ``current``, and
    ``bound_warning``: the one-line warning when the model's bound missed its target on
    the holdout, else None; the card's ``serving`` says what serves and why); with
    ``verify``, each also gets ``verified`` and ``problem`` from every check loading
    makes, against the digests recorded in the instance's history. Listing alone needs
    no history (``instance`` may be ``None``)."""
    from planner.learning.registry import Registry, bound_warning

    ledger = instance.store if instance is not None else None
    registry = Registry(models_dir, ledger=ledger)
    entries = registry.list(pipeline)
    for entry in entries:
        if "error" not in entry:
            entry["bound_warning"] = bound_warning({"model_id": entry["id"], **entry})
    if verify:
        for entry in entries:
            try:
                registry.verify(entry["pipeline"], entry["id"])
                entry.update(verified=True, problem=None)
            except ModelError as exc:
                entry.update(verified=False, problem=exc.what)
    return entries
