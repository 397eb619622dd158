"""The plan of one run: per-task estimates in, decisions out.

:func:`task_queries` lists the tasks of a selection for the predictor; :func:`build_plan`
turns the predictor's estimates into a :class:`~planner.planning.model.Plan`; :func:`plan_to_json`
gives the document ``planner plan --json`` prints and the history stores.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from planner.config.models import Pipeline, Step
from planner.gcpause import paused_gc
from planner.planning.concurrency import (
    ConcurrencyChoice,
    adaptive_range,
    choose_concurrency,
    cpu_limit,
    makespan_at,
    most_at_once,
    run_cpu_share,
    smallest_fitting,
    what_if,
    what_if_counts,
)
from planner.planning.contention import (
    StepContention,
    Stretched,
    contention_json,
    dominant_knee,
    reference_stretch,
)
from planner.planning.estimate import estimate_run
from planner.planning.interval import decide_interval
from planner.planning.makespan import GraphSchedule, lower_bound, schedule_graph
from planner.planning.model import (
    DEFAULT_SOURCE,
    PastRun,
    Plan,
    RunEstimate,
    StepPlan,
    TaskEstimate,
    TaskPlan,
    TaskQuery,
)
from planner.planning.recommend import recommend

__all__ = ["build_plan", "plan_to_json", "provisional_concurrency", "task_queries"]


def provisional_concurrency(pipeline: Pipeline, override: int | None, cpu_count: int | None) -> int:
    """The concurrency to put in task queries before memory is known (override, fixed, CPU)."""
    if override is not None:
        return override
    setting = pipeline.concurrency.rule
    return setting if isinstance(setting, int) else cpu_limit(cpu_count)


def task_queries(
    pipeline: Pipeline,
    steps: Sequence[Step],
    *,
    concurrency: int,
    accounts: Sequence[str] | None = None,
    quantity: float | None = None,
    step_concurrency: Mapping[str, int] | None = None,
) -> list[TaskQuery]:
    """One query per task of ``steps``: per account for per-account steps, else one.

    ``step_concurrency``: the concurrency to ask a step's tasks at, where it differs from
    ``concurrency`` (a step with a contention curve is asked at the concurrency of its
    latest runs, and the plan stretches from there)."""
    chosen = list(accounts) if accounts is not None else list(pipeline.account_list)
    queries = []
    own = step_concurrency or {}
    for step in steps:
        amount = float(quantity if quantity is not None else step.quantity)
        params = dict(step.params)  # one mapping per step, shared by its tasks (read-only)
        at = own.get(step.id, concurrency)
        for account in chosen if step.per_account else [None]:
            queries.append(TaskQuery(step.id, account, amount, params, len(chosen), at))
    return queries


@paused_gc()
def build_plan(
    pipeline: Pipeline,
    steps: Sequence[Step],
    queries: Sequence[TaskQuery],
    estimates: Sequence[TaskEstimate],
    *,
    past_runs: Sequence[PastRun],
    now: datetime,
    cpu_count: int | None,
    free_memory_mb: float | None,
    cluster_slots: int | None = None,
    concurrency: int | None = None,
    current_start: datetime | None = None,
    warnings: Sequence[str] = (),
    misfire_grace_s: float | None = None,
    contention: Mapping[str, StepContention] | None = None,
) -> Plan:
    """The plan of a run of ``steps`` whose tasks are ``queries`` estimated as ``estimates``.

    ``past_runs``: finished runs of the pipeline with the predictions stored for them (they
    calibrate the run bound); ``current_start``: when the planned run starts (``now`` by
    default), from which the next start is decided; ``concurrency`` overrides the file;
    ``cluster_slots``: the most tasks the machine runs at once (a cluster's), which neither
    ``auto`` nor an adaptive ceiling passes.

    The concurrency is :func:`~planner.planning.concurrency.choose_concurrency` with the
    run's CPU per task (the estimates' ``cpu_share`` weighted by their predicted seconds)
    and the most tasks that can run at once: the runner takes ``plan.concurrency``.

    ``contention``: per step, how its tasks slow down with concurrency
    (:mod:`planner.planning.contention`). A step with a curve has each task's estimate,
    made at its query's ``concurrency``, stretched to the count it runs at (in the plan
    and in the what-if table), and ``auto`` stays within the knee of the step with the most
    predicted seconds.
    """
    if len(queries) != len(estimates):
        raise ValueError(f"{len(queries)} tasks but {len(estimates)} estimates")
    ids = [s.id for s in steps]
    deps = {s.id: [d for d in s.depends_on if d in ids] for s in steps}
    # the positions of each step's tasks, in the order given (a stable sort by step rank:
    # linear when the queries come grouped by step, as task_queries makes them)
    rank = {i: r for r, i in enumerate(ids)}
    ranks = [rank.get(step, len(ids)) for step in map(_STEP, queries)]
    order = sorted(range(len(queries)), key=ranks.__getitem__)
    per_rank = Counter(ranks)
    per_step: dict[str, list[int]] = {}
    begin = 0
    for r, i in enumerate(ids):
        per_step[i] = order[begin : begin + per_rank[r]]
        begin += per_rank[r]
    all_predicted = list(map(_PREDICTED, estimates))
    all_bounds = list(map(max, map(_BOUND, estimates), all_predicted))
    asked = {i: list(map(all_predicted.__getitem__, per_step[i])) for i in ids}
    asked_bounds = {i: list(map(all_bounds.__getitem__, per_step[i])) for i in ids}
    contention = {i: contention[i] for i in ids if i in contention} if contention else {}
    curves = {i: c.usl for i, c in contention.items() if c.usl is not None}
    stretched: Stretched | None = None
    if curves:  # the concurrency each estimate was asked at (a default has none)
        refs: dict[str, list[float | None]] = {
            i: [
                reference_stretch(
                    contention[i], estimates[k].source, queries[k].concurrency, DEFAULT_SOURCE
                )
                for k in per_step[i]
            ]
            for i in curves
        }
        stretched = Stretched(asked, refs, curves)
        stretched_bounds = Stretched(asked_bounds, refs, curves)

    peak = _memory_per_task(pipeline, estimates)
    cpu_share = run_cpu_share(map(_CPU, estimates), all_predicted)
    widest = most_at_once(deps, {i: len(asked[i]) for i in ids})
    if cluster_slots is not None:
        widest = min(widest, cluster_slots)
    choice = choose_concurrency(
        concurrency if concurrency is not None else pipeline.concurrency.rule,
        cpu_count=cpu_count,
        free_memory_mb=free_memory_mb,
        peak_mb_per_task=peak,
        cpu_per_task=cpu_share,
        widest=widest,
        knee=dominant_knee(contention, {i: sum(asked[i]) for i in ids}),
    )
    slots = choice.concurrency
    if stretched is not None:
        predicted = {i: list(v) for i, v in stretched(slots).items()}
        bounds = {i: list(v) for i, v in stretched_bounds(slots).items()}
    else:
        predicted, bounds = asked, asked_bounds
    run, sched, bound_sched = estimate_run(
        deps,
        predicted,
        bounds,
        slots,
        past=past_runs,
        quantile=pipeline.schedule.quantile,
    )

    accounts = list(map(_ACCOUNT, queries))
    sources = list(map(_SOURCE, estimates))
    peaks = list(map(_PEAK, estimates))
    tasks: list[TaskPlan] = []
    step_plans: list[StepPlan] = []
    for i in ids:
        positions = per_step[i]
        slot_i, start_i = sched.slot[i], sched.start[i]
        account_i = list(map(accounts.__getitem__, positions))
        tasks += _task_plans(
            i,
            zip(
                account_i,
                predicted[i],
                bounds[i],
                map(sources.__getitem__, positions),
                slot_i,
                map(peaks.__getitem__, positions),
                strict=True,
            ),
        )
        # the accounts of each slot (slots in order), in the order they start there
        by_start = sorted(range(len(positions)), key=start_i.__getitem__)
        by_slot = sorted(by_start, key=slot_i.__getitem__)
        # the step's own span: its first task's start to its last task's end (not from
        # when it became ready: queueing behind other steps is not the step's time)
        first, last = _extent(start_i, predicted[i], sched.ready[i])
        bound_first, bound_last = _extent(bound_sched.start[i], bounds[i], 0.0)
        step_plans.append(
            StepPlan(
                step=i,
                tasks=len(positions),
                slots=slots,
                makespan_s=last - first,
                lower_bound_s=lower_bound(predicted[i], slots),
                bound_s=bound_last - bound_first,
                groups=tuple(
                    tuple(map(account_i.__getitem__, group))
                    for _, group in itertools.groupby(by_slot, key=slot_i.__getitem__)
                ),
                start_s=first,
                end_s=last,
            )
        )

    counts = what_if_counts(slots, (choice.cpu_limit, choice.memory_limit), widest)
    memo = {slots: sched.makespan}
    cadence = pipeline.schedule.cadence
    durations = predicted if stretched is None else stretched
    if cadence is not None and run.bound_s > cadence:  # which count would fit the cadence?
        limit = cadence / max(run.factor, 1.0)
        fit = smallest_fitting(deps, durations, limit, widest, memo=memo)
        if fit is not None:
            counts = sorted({*counts, fit})
    table = what_if(
        deps,
        durations,
        counts,
        peak_mb_per_task=peak,
        cpu_count=cpu_count,
        free_memory_mb=free_memory_mb,
        cpu_per_task=cpu_share,
        memo=memo,
    )
    if stretched is not None:  # beside each row: the same run without the slowdown
        table = [
            dataclasses.replace(w, flat_makespan_s=makespan_at(deps, asked, w.concurrency))
            for w in table
        ]
    interval = decide_interval(
        pipeline.schedule,
        run.bound_s,
        current_start or now,
        now,
        known_bound_s=_known_bound(deps, bounds, per_step, sources, slots, run, bound_sched),
        misfire_grace_s=misfire_grace_s,
    )
    recs = recommend(
        run=run,
        interval=interval,
        min_margin=pipeline.schedule.min_margin,
        choice=choice,
        what_if=table,
        steps=step_plans,
        tasks=tasks,
        free_memory_mb=free_memory_mb,
        contention=contention,
    )
    setting = pipeline.concurrency
    limits = (
        adaptive_range(
            setting.min, setting.ceiling, cpu_count, _least(choice.memory_limit, cluster_slots)
        )
        if setting.adaptive
        else None
    )
    return Plan(
        pipeline=pipeline.name,
        created_at=now,
        concurrency=slots,
        concurrency_rule=_rule(choice, limits if concurrency is None else None),
        run=run,
        steps=tuple(step_plans),
        tasks=tuple(tasks),
        interval=interval,
        what_if=tuple(table),
        recommendations=tuple(recs),
        warnings=(*warnings, *choice.warnings),
        memory_per_task_mb=peak,
        free_memory_mb=free_memory_mb,
        cpu_per_task=cpu_share,
        widest=widest,
        contention=contention,
        contention_notes=tuple(
            c.describe() for c in contention.values() if c.usl is None and c.levels
        ),
        adaptive_start=choice.auto,
        adaptive_ceiling=_adaptive_ceiling(contention, ids, widest),
        adaptive_range=limits,
    )


def _least(*limits: int | None) -> int | None:
    known = [n for n in limits if n is not None]
    return min(known) if known else None


def _rule(choice: ConcurrencyChoice, limits: tuple[int, int] | None) -> str:
    """How the concurrency was chosen; for an adaptive limit (``limits``: its range),
    where it starts and the range it stays in."""
    if limits is None:
        return choice.rule
    return (
        f"adaptive: starts at {choice.concurrency}, then follows what the run measures, "
        f"{limits[0]} to {limits[1]}; the start is {choice.rule}"
    )


def _adaptive_ceiling(
    contention: Mapping[str, StepContention], ids: Sequence[str], widest: int
) -> int | None:
    """The largest of the steps' best counts (past it no step gains), within the widest
    part of the run; ``None`` when a step has no curve or its curve no peak."""
    best = []
    for i in ids:
        found = contention.get(i)
        count = found.usl.best_count() if found is not None and found.usl is not None else None
        if count is None:
            return None
        best.append(count)
    return min(max(best), widest) if best else None


_STEP = operator.attrgetter("step")
_ACCOUNT = operator.attrgetter("account")
_PREDICTED = operator.attrgetter("predicted_s")
_BOUND = operator.attrgetter("bound_s")
_SOURCE = operator.attrgetter("source")


def _known_bound(  # noqa: PLR0917 (private, one caller)
    deps: Mapping[str, Sequence[str]],
    bounds: Mapping[str, Sequence[float]],
    per_step: Mapping[str, Sequence[int]],
    sources: Sequence[str],
    slots: int,
    run: RunEstimate,
    bound_sched: GraphSchedule,
) -> float | None:
    """The run bound counting only tasks with history (``None`` when every task has some):
    the run bound scaled by the share of the task-bound schedule those tasks make, so
    that tasks at the default estimate never stretch the interval."""
    if DEFAULT_SOURCE not in sources:
        return None
    known = {
        step: [
            0.0 if sources[pos] == DEFAULT_SOURCE else bound
            for pos, bound in zip(per_step[step], bounds[step], strict=True)
        ]
        for step in deps
    }
    total = bound_sched.makespan
    if total <= 0:
        return 0.0
    return run.bound_s * schedule_graph(deps, known, slots).makespan / total


_PEAK = operator.attrgetter("peak_rss_mb")
_CPU = operator.attrgetter("cpu_share")
_NEW = object.__new__
#: Frozen dataclasses are built through ``object.__setattr__`` per field, several times
#: slower than filling the instance dictionary; a plan has a TaskPlan per task, so the
#: shortcut is taken for a plain dataclass (no ``__slots__``, no ``__post_init__``).
_TASK_FIELDS = ("step", "account", "predicted_s", "bound_s", "source", "slot", "peak_rss_mb")
_FAST_TASKS = (
    not hasattr(TaskPlan, "__slots__")
    and not hasattr(TaskPlan, "__post_init__")
    and tuple(f.name for f in dataclasses.fields(TaskPlan)) == _TASK_FIELDS
)


def _task_plans(
    step: str, rows: Iterable[tuple[str | None, float, float, str, int, float | None]]
) -> list[TaskPlan]:
    """``TaskPlan(step, account, predicted, bound, source, slot, peak)`` per row."""
    if not _FAST_TASKS:
        return [TaskPlan(step, a, p, b, src, k, m) for a, p, b, src, k, m in rows]
    out: list[TaskPlan] = []
    append = out.append
    for a, p, b, src, k, m in rows:
        task = _NEW(TaskPlan)
        fields = task.__dict__
        fields["step"] = step
        fields["account"] = a
        fields["predicted_s"] = p
        fields["bound_s"] = b
        fields["source"] = src
        fields["slot"] = k
        fields["peak_rss_mb"] = m
        append(task)
    return out


def _extent(
    starts: Sequence[float], durations: Sequence[float], empty_at: float
) -> tuple[float, float]:
    """``(first start, last end)`` of a step's tasks; ``(empty_at, empty_at)`` for none."""
    if not starts:
        return empty_at, empty_at
    return min(starts), max(map(operator.add, starts, durations))


def _memory_per_task(pipeline: Pipeline, estimates: Sequence[TaskEstimate]) -> float | None:
    """The file's ``memory_per_task`` in MB, else the largest predicted peak, else ``None``."""
    setting = pipeline.concurrency.memory_per_task
    if isinstance(setting, int):
        return setting / 1024**2
    peaks = [e.peak_rss_mb for e in estimates if e.peak_rss_mb]
    return max(peaks) if peaks else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan as the JSON document of ``planner plan --json``."""
    with paused_gc():
        return _plan_json(plan)


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "pipeline": plan.pipeline,
        "concurrency": plan.concurrency,
        "concurrency_rule": plan.concurrency_rule,
        "cpu_per_task": _round(plan.cpu_per_task),
        "run": {
            "predicted_s": _round(plan.run.predicted_s),
            "bound_s": _round(plan.run.bound_s),
            "critical_path": list(plan.run.critical_path),
        },
        "steps": [
            {
                "step": s.step,
                "tasks": s.tasks,
                "makespan_s": _round(s.makespan_s),
                "lower_bound_s": _round(s.lower_bound_s),
                "bound_s": _round(s.bound_s),
                "start_s": _round(s.start_s),
                "end_s": _round(s.end_s),
            }
            for s in plan.steps
        ],
        "tasks": [  # 10,000 rows in a large plan: rounded inline
            {
                "step": t.step,
                "account": t.account,
                "predicted_s": round(float(t.predicted_s), 3),
                "bound_s": round(float(t.bound_s), 3),
                "source": t.source,
                "slot": t.slot,
            }
            for t in plan.tasks
        ],
        "interval_s": _round(plan.interval.interval_s),
        "next_start": plan.interval.next_start.isoformat() if plan.interval.next_start else None,
        "warnings": list(plan.warnings),
        "what_if": [
            {
                "concurrency": w.concurrency,
                "makespan_s": _round(w.makespan_s),
                "memory_mb": _round(w.memory_mb),
                "without_contention_s": _round(w.flat_makespan_s),
            }
            for w in plan.what_if
        ],
        "contention": {s.step: contention_json(plan.contention.get(s.step)) for s in plan.steps},
        "contention_warnings": list(plan.contention_notes),
        "adaptive": {"start": plan.adaptive_start, "ceiling": plan.adaptive_ceiling},
        "recommendations": [_rec_json(r.as_dict()) for r in plan.recommendations],
    }


def _rec_json(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _rec_number(v) if isinstance(v, float) else v for k, v in rec.items()}


def _rec_number(value: float) -> float:
    """3 decimals; a figure under 0.01 (a contention curve's kappa) keeps 3 significant
    digits instead of becoming 0."""
    if value != 0 and abs(value) < 0.01:
        return float(f"{value:.3g}")
    return round(value, 3)
