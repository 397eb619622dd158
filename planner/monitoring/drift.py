"""Is the model still right? Recent error and bound coverage from the runs' own plans (pure).

After a run, every task of the last runs has a prediction and a calibrated upper bound
(its run's stored plan) and an actual duration. :func:`prediction_quality` measures the
median absolute percentage error of the points and the share of tasks that finished
within their bound; :func:`drift_signal` says when either has drifted past its threshold:
the coverage more than ``coverage_slack`` below its target (the quantile the bounds were
calibrated for), or the MdAPE above ``max_mdape``. Too few tasks (``min_tasks``) say
nothing: a verdict on a handful would page people for noise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from planner.monitoring.watch import Signal

if TYPE_CHECKING:
    from planner.history import HistoryStore

__all__ = [
    "PlannedTask",
    "Quality",
    "drift_signal",
    "planned_attempts",
    "planned_tasks",
    "planned_vs_actual",
    "prediction_quality",
]


@dataclass(frozen=True)
class Quality:
    """Point error and bound coverage over ``tasks`` planned tasks of ``runs`` runs."""

    runs: int
    tasks: int
    mdape: float | None
    coverage: float | None


def prediction_quality(rows: Iterable[tuple[str, float, float, float]]) -> Quality:
    """``rows``: (run id, predicted_s, bound_s, actual_s) per finished task."""
    runs: set[str] = set()
    predicted, bound, actual = [], [], []
    for run_id, p, b, a in rows:
        if a > 0 and p > 0:
            runs.add(run_id)
            predicted.append(p)
            bound.append(b)
            actual.append(a)
    if not actual:
        return Quality(len(runs), 0, None, None)
    p_arr, b_arr, a_arr = np.array(predicted), np.array(bound), np.array(actual)
    mdape = float(np.median(np.abs(p_arr - a_arr) / a_arr))
    coverage = float(np.mean(a_arr <= b_arr))
    return Quality(len(runs), len(actual), mdape, coverage)


def drift_signal(
    quality: Quality,
    *,
    target: float,
    coverage_slack: float = 0.1,
    max_mdape: float = 0.5,
    min_tasks: int = 20,
) -> Signal | None:
    """A warning when the recent coverage or error has drifted (None when it has not)."""
    if quality.tasks < min_tasks or quality.coverage is None or quality.mdape is None:
        return None
    problems = []
    if quality.coverage < target - coverage_slack:
        problems.append(
            f"{quality.coverage:.0%} of tasks finished within their bound (target {target:.0%})"
        )
    if quality.mdape > max_mdape:
        problems.append(f"median error {quality.mdape:.0%} (threshold {max_mdape:.0%})")
    if not problems:
        return None
    return Signal(
        "warning",
        "model_drift",
        None,
        None,
        None,
        None,
        None,
        f"predictions have drifted over the last {quality.runs} run(s), {quality.tasks} "
        f"task(s): {'; '.join(problems)}; retrain with planner train",
    )


def planned_vs_actual(
    store: HistoryStore, pipeline: str, runs: int
) -> list[tuple[str, float, float, float]]:
    """(run id, predicted_s, bound_s, actual_s) of every task that succeeded in the last
    ``runs`` runs that stored their plan (the plan's prediction and bound for that task)."""
    return [(r, p, b, a) for r, _step, p, b, a in planned_tasks(store, pipeline, runs=runs)]


def planned_tasks(
    store: HistoryStore,
    pipeline: str,
    *,
    runs: int | None = None,
    run_ids: Iterable[str] | None = None,
) -> list[tuple[str, str, float, float, float]]:
    """(run id, step, predicted_s, bound_s, actual_s) of every task that succeeded in the
    last ``runs`` runs that stored their plan, or in ``run_ids``: the newest plan stored
    with the run gives the task's prediction and bound; tasks planned at the default (no
    history) are left out (:func:`planned_attempts` gives each task's account and times)."""
    return [
        (t.run_id, t.step, t.predicted_s, t.bound_s, t.actual_s)
        for t in planned_attempts(store, pipeline, runs=runs, run_ids=run_ids)
    ]


@dataclass(frozen=True)
class PlannedTask:
    """A task that succeeded in a run that stored its plan: what the plan said of it
    (``predicted_s``, ``bound_s`` and where the estimate came from, ``source``) and the
    attempt that succeeded (``actual_s``, its account and times)."""

    run_id: str
    step: str
    account: str | None
    predicted_s: float
    bound_s: float
    actual_s: float
    source: str
    started_at: datetime
    finished_at: datetime | None


def planned_attempts(
    store: HistoryStore,
    pipeline: str,
    *,
    runs: int | None = None,
    run_ids: Iterable[str] | None = None,
) -> list[PlannedTask]:
    """The tasks of :func:`planned_tasks`, each with its account, estimate source and
    times; a run's tasks in the order their attempts started."""
    wanted = None if run_ids is None else set(run_ids)
    if wanted is not None and not wanted:
        return []
    if wanted is not None:  # each run's own newest plan, one read per run
        chosen = [p for r in sorted(wanted) for p in store.plans(pipeline, 1, run_id=r)]
    else:  # newest first: a run's newest plan wins
        chosen = store.plans(pipeline, limit=None if runs is None else runs * 3)
    rows: list[PlannedTask] = []
    seen: set[str] = set()
    for plan in chosen:
        run_id = plan.run_id
        if run_id is None or run_id in seen:
            continue
        seen.add(run_id)
        planned = {
            (t["step"], t["account"]): (
                float(t["predicted_s"]),
                float(t["bound_s"]),
                str(t.get("source", "")),
            )
            for t in plan.document.get("tasks", [])
            if t.get("source") != "default"  # planned at the default: no prediction
        }
        for attempt in store.attempts_for_run(run_id):
            key = (attempt.step, attempt.account)
            if attempt.status == "succeeded" and key in planned and attempt.duration_s:
                predicted, bound, source = planned[key]
                rows.append(
                    PlannedTask(
                        run_id=run_id,
                        step=attempt.step,
                        account=attempt.account,
                        predicted_s=predicted,
                        bound_s=bound,
                        actual_s=float(attempt.duration_s),
                        source=source,
                        started_at=attempt.started_at,
                        finished_at=attempt.finished_at,
                    )
                )
        if runs is not None and len(seen) >= runs:
            break
    return rows
