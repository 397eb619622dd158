"""How good a pipeline's predictions are, from its runs' own plans, and the model that
serves (the dashboard's model page; see :mod:`planner.service.dashboard`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from statistics import median
from typing import TYPE_CHECKING, Any

from planner.clock import ensure_utc
from planner.defaults import QUANTILE
from planner.errors import UsageError

if TYPE_CHECKING:
    from planner.monitoring.drift import PlannedTask
    from planner.service.instance import Instance

__all__ = ["QUALITY_RUNS", "model_quality"]

#: The last runs with a stored plan whose tasks the quality summary judges (as the
#: metrics' ``planner_bound_coverage`` and the drift check).
QUALITY_RUNS = 10


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def model_quality(
    instance: Instance, pipeline: str, now: datetime, *, runs: int | None = 50
) -> dict[str, Any]:
    """How good the predictions of ``pipeline`` are, from its runs' own plans (the last
    ``runs`` runs that stored one; ``None``: all), and the model that serves:

    - ``target``: the coverage the bounds aim at (the live model's ``quantile``, else
      the default 0.95);
    - ``summary``: ``{"runs", "tasks", "mdape", "coverage"}`` over the last
      :data:`QUALITY_RUNS` of those runs (the drift check's and the metrics' figures);
    - ``points``: per task that succeeded, by finish: ``{"run_id", "step", "account",
      "estimate", "finished_at", "predicted_s", "bound_s", "actual_s", "within_bound",
      "ape"}`` (tasks planned at the default, with no history, are left out);
    - ``coverage``: per run, oldest first: ``{"run_id", "at", "tasks", "within",
      "coverage", "cumulative"}`` (the run's share within bound, and over every run so far);
    - ``steps``: per step: ``{"step", "tasks", "mdape", "coverage", "median_ratio"}``
      (``median_ratio``: median actual / predicted);
    - ``model``: the live model's card (``planner models --json``'s entry) plus
      ``trained_at`` and ``promoted_at`` (from the history's ledger) and ``recorded``
      (its digest is in this history); ``null`` when none is live.

    ``UsageError`` when the pipeline has no run."""
    from planner.monitoring.drift import (
        planned_attempts,
        planned_vs_actual,
        prediction_quality,
    )
    from planner.service.training import list_models

    now = ensure_utc(now)
    tasks = planned_attempts(instance.store, pipeline, runs=runs)
    if not tasks and not instance.store.list_runs(pipeline, limit=1):
        raise UsageError(pipeline, f"no runs of this pipeline in {instance.url}")
    tasks.sort(key=lambda t: (t.finished_at or t.started_at, t.started_at))
    model = _live_model(instance, pipeline, list_models(instance, instance.models_dir, pipeline))
    target = float(model["quantile"]) if model and model.get("quantile") else QUANTILE
    by_run: dict[str, list[PlannedTask]] = {}
    for t in tasks:
        by_run.setdefault(t.run_id, []).append(t)
    quality = prediction_quality(planned_vs_actual(instance.store, pipeline, QUALITY_RUNS))
    return {
        "pipeline": pipeline,
        "now": now.isoformat(),
        "target": target,
        "summary": {
            "runs": quality.runs,
            "tasks": quality.tasks,
            "mdape": _round(quality.mdape, 4),
            "coverage": _round(quality.coverage, 4),
        },
        "points": [_point(t) for t in tasks],
        "coverage": _coverage(by_run),
        "steps": _per_step(tasks),
        "model": model,
    }


def _point(t: PlannedTask) -> dict[str, Any]:
    return {
        "run_id": t.run_id,
        "step": t.step,
        "account": t.account,
        "estimate": t.source,
        "finished_at": _iso(t.finished_at),
        "predicted_s": t.predicted_s,
        "bound_s": t.bound_s,
        "actual_s": round(t.actual_s, 3),
        "within_bound": t.actual_s <= t.bound_s,
        "ape": round(abs(t.predicted_s - t.actual_s) / t.actual_s, 4),
    }


def _coverage(by_run: dict[str, list[PlannedTask]]) -> list[dict[str, Any]]:
    rows = []
    hits = total = 0
    for run_id, tasks in sorted(by_run.items(), key=lambda kv: min(t.started_at for t in kv[1])):
        within = sum(1 for t in tasks if t.actual_s <= t.bound_s)
        hits, total = hits + within, total + len(tasks)
        rows.append(
            {
                "run_id": run_id,
                "at": _iso(min(t.started_at for t in tasks)),
                "tasks": len(tasks),
                "within": within,
                "coverage": round(within / len(tasks), 4),
                "cumulative": round(hits / total, 4),
            }
        )
    return rows


def _per_step(tasks: Sequence[PlannedTask]) -> list[dict[str, Any]]:
    steps: dict[str, list[PlannedTask]] = {}
    for t in tasks:
        steps.setdefault(t.step, []).append(t)
    return [
        {
            "step": step,
            "tasks": len(group),
            "mdape": round(median(abs(t.predicted_s - t.actual_s) / t.actual_s for t in group), 4),
            "coverage": round(sum(t.actual_s <= t.bound_s for t in group) / len(group), 4),
            "median_ratio": round(median(t.actual_s / t.predicted_s for t in group), 4),
        }
        for step, group in sorted(steps.items())
    ]


def _live_model(
    instance: Instance, pipeline: str, entries: list[dict[str, Any]]
) -> dict[str, Any] | None:
    live_one = next((e for e in entries if e.get("current") and "error" not in e), None)
    if live_one is None:
        return None
    ledger = {m.model_id: m for m in instance.store.trained_models(pipeline)}
    recorded = ledger.get(live_one["id"])
    return {
        **live_one,
        "trained_at": live_one.get("created_at"),
        "promoted_at": _iso(recorded.promoted_at) if recorded is not None else None,
        "recorded": recorded is not None,
    }
