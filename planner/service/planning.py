"""Plan a run: the use case behind ``planner plan``, ``planner run``, ``validate`` and the demo.

Estimates come from the predictor (the live model, else history baselines, else a
default per task); the machine's state comes from the instance's probe; the arithmetic
is pure (:mod:`planner.planning`). A plan is stored only when asked (:func:`save_plan`):
``planner run`` stores the plan of every run with its id, and the run bound is
calibrated on those (:func:`past_runs`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from planner.defaults import DEFAULT_TASK_S
from planner.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from planner.config import Pipeline
    from planner.execution import TaskKey
    from planner.history import HistoryStore
    from planner.learning.predictor import Predictor
    from planner.planning.model import PastRun, Plan, TaskEstimate, TaskQuery
    from planner.service.instance import Instance

__all__ = [
    "PlanRequest",
    "estimate_tasks",
    "make_plan",
    "past_runs",
    "planning_summary",
    "save_plan",
]


@dataclass(frozen=True)
class PlanRequest:
    """Which tasks to plan and how: the selection, and overrides of the pipeline file.

    ``tasks``: plan only these (a run's remaining tasks, e.g. when resuming).
    ``misfire_grace_s``: a fixed schedule's start later than this is skipped (the daemon's
    grace; see :func:`~planner.planning.interval.decide_interval`)."""

    steps: Sequence[str] | None = None
    with_deps: bool = False
    accounts: Sequence[str] | None = None
    concurrency: int | None = None
    quantity: float | None = None
    current_start: datetime | None = None
    tasks: Collection[TaskKey] | None = None
    misfire_grace_s: float | None = None


def make_plan(
    instance: Instance,
    pipeline: Pipeline,
    request: PlanRequest | None = None,
    *,
    now: datetime | None = None,
    frame: pd.DataFrame | None = None,
) -> Plan:
    """The plan of a run of ``pipeline`` starting at ``request.current_start`` (default now).

    ``frame``: the pipeline's attempts when the caller has already read them.

    Each step's contention (how its durations grow with concurrency,
    :func:`~planner.learning.contention.fit_contention`) is fitted from the same frame; a
    step with a curve is asked at the concurrency of its latest runs and the plan stretches
    its tasks to the count they run at; ``plan.contention`` keeps every step's evidence."""
    from planner.config import select_steps
    from planner.learning.contention import fit_contention
    from planner.planning.plan import build_plan, provisional_concurrency, task_queries

    request = request or PlanRequest()
    moment = now or instance.clock.now()
    chosen = select_steps(pipeline, request.steps, with_deps=request.with_deps)
    if request.accounts is not None:
        known = set(pipeline.account_list)
        unknown = [a for a in request.accounts if a not in known]
        if unknown:
            raise UsageError("--accounts", f"unknown account(s): {', '.join(unknown)}")
    if request.quantity is not None and request.quantity < 0:
        raise UsageError("--quantity", f"must be >= 0, got {request.quantity:g}")
    machine = instance.machine.read()
    if frame is None:
        frame = instance.store.attempts_frame(pipeline=pipeline.name)
    predictor = _predictor(instance, pipeline, frame)
    contention = fit_contention(frame, growth=predictor.growth)
    queries = task_queries(
        pipeline,
        chosen,
        concurrency=provisional_concurrency(pipeline, request.concurrency, machine.cpu_count),
        accounts=request.accounts,
        quantity=request.quantity,
        step_concurrency={
            step: found.reference
            for step, found in contention.items()
            if found.usl is not None and found.reference is not None
        },
    )
    if request.tasks is not None:
        wanted = {(k.step, k.account) for k in request.tasks}
        queries = [q for q in queries if (q.step, q.account) in wanted]
    estimates = list(predictor.predict(queries, moment))
    warnings = [*predictor.warnings, *predictor.extrapolations]
    return build_plan(
        pipeline,
        chosen,
        queries,
        estimates,
        past_runs=past_runs(instance.store, pipeline.name),
        now=moment,
        cpu_count=machine.cpu_count,
        free_memory_mb=machine.free_memory_mb,
        cluster_slots=machine.slots,
        concurrency=request.concurrency,
        current_start=request.current_start,
        warnings=warnings,
        misfire_grace_s=request.misfire_grace_s,
        contention=contention,
    )


def save_plan(store: HistoryStore, plan: Plan, run_id: str | None = None) -> dict[str, Any]:
    """Store ``plan`` (with the run it was made for, when known); returns its document."""
    from planner.planning.plan import plan_to_json

    document = plan_to_json(plan)
    store.save_plan(
        plan.pipeline, run_id, plan.created_at, plan.run.predicted_s, plan.run.bound_s, document
    )
    return document


def estimate_tasks(
    instance: Instance,
    pipeline: Pipeline,
    queries: Sequence[TaskQuery],
    frame: pd.DataFrame,
    *,
    now: datetime,
) -> tuple[list[TaskEstimate], list[str]]:
    """Estimates for ``queries`` (model, else baselines, else the default) and the
    predictor's warnings."""
    predictor = _predictor(instance, pipeline, frame)
    estimates = list(predictor.predict(queries, now))
    return estimates, [*predictor.warnings, *predictor.extrapolations]


def _predictor(instance: Instance, pipeline: Pipeline, frame: pd.DataFrame) -> Predictor:
    """The pipeline's predictor on ``frame`` (the live model, else the baselines)."""
    from planner.learning.predictor import Predictor

    return Predictor.load(
        instance.models_dir,
        pipeline.name,
        frame,
        ledger=instance.store,
        quantile=pipeline.schedule.quantile,
        default_s=DEFAULT_TASK_S,
        size_params={step.id: step.size for step in pipeline.steps if step.size},
    )


def past_runs(store: HistoryStore, pipeline: str) -> list[PastRun]:
    """Finished runs of ``pipeline``, each with the prediction of the plan stored with its
    run id (``None`` for a run without one): what calibrates the run bound."""
    from planner.planning.model import PastRun

    own = store.run_predictions(pipeline=pipeline)
    out = []
    for run in sorted(store.list_runs(pipeline), key=lambda r: r.started_at):
        if run.finished_at is None:
            continue
        predicted, bound = own.get(run.run_id, (None, None))
        out.append(
            PastRun(
                run_id=run.run_id,
                started_at=run.started_at,
                finished_at=run.finished_at,
                status=run.status,
                predicted_s=predicted,
                bound_s=bound,
            )
        )
    return out


def planning_summary(
    instance: Instance,
    pipeline: Pipeline,
    *,
    now: datetime | None = None,
    steps: Sequence[str] | None = None,
    with_deps: bool = False,
) -> dict[str, Any] | None:
    """For ``planner validate``: the run estimate of the selected ``steps`` (default all)
    and the recommended interval, or ``None`` when the pipeline has no history yet.
    Nothing is stored.

    Returns ``{"predicted_s", "bound_s", "critical_path", "concurrency", "interval_s",
    "next_start", "lines": [human-readable lines]}``.
    """
    from planner.units import format_duration

    if instance.store.count_attempts(pipeline.name) == 0:
        return None
    plan = make_plan(instance, pipeline, PlanRequest(steps=steps, with_deps=with_deps), now=now)
    interval = plan.interval
    lines = [
        f"estimated run: {format_duration(plan.run.predicted_s)} (bound "
        f"{format_duration(plan.run.bound_s)}) at concurrency {plan.concurrency}",
        "recommended interval: "
        + (format_duration(interval.interval_s) if interval.interval_s is not None else "none")
        + f" ({interval.reason})",
    ]
    return {
        "predicted_s": plan.run.predicted_s,
        "bound_s": plan.run.bound_s,
        "critical_path": list(plan.run.critical_path),
        "concurrency": plan.concurrency,
        "interval_s": interval.interval_s,
        "next_start": interval.next_start.isoformat() if interval.next_start else None,
        "lines": lines,
    }
