"""Capacity: the run at other concurrencies and quantities, and what fits a cadence.

Every figure comes from the planner's own plans (:func:`planner.service.planning.make_plan`,
which ``planner plan`` prints): for each concurrency (or quantity) asked, a plan is made on
the history and the machine as they are now, nothing stored. A plan's bound is the run's
calibrated upper bound, so "fits the cadence" means the run ends before the next start
with the bound's confidence; the memory is the concurrency times the memory per task the
plan counts (the file's ``memory_per_task``, else the largest predicted peak).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from planner.analysis.columns import Column, documented, typed_frame
from planner.analysis.figures import new_figure, no_data
from planner.analysis.history import Source, open_history

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from planner.config import Pipeline
    from planner.planning.model import Plan
    from planner.service.instance import Instance

__all__ = [
    "OVERVIEW_COLUMNS",
    "WHAT_IF_COLUMNS",
    "CadenceFit",
    "PipelineRef",
    "cadence_overview",
    "concurrency_what_if",
    "fits_cadence",
    "plan_advice",
    "plot_what_if",
    "quantity_what_if",
]

#: A pipeline: loaded, or the path of its file.
PipelineRef: TypeAlias = "Pipeline | Path | str"
#: With at most this many tasks at once, every concurrency up to it is tried by default.
_EVERY_COUNT_UP_TO = 16
_DEFAULT_SCALES = (0.5, 1.0, 1.5, 2.0, 3.0)


def _load(pipeline: PipelineRef) -> Pipeline:
    from planner.config import Pipeline, load_pipeline

    return pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)


@contextmanager
def _instance(source: Source, pipeline: Pipeline) -> Iterator[Instance]:
    """The instance to plan ``pipeline`` with: ``source``'s history, the pipeline's models
    folder (``$PLANNER_MODELS``, else ``<state_dir>/models``), this machine."""
    from planner.history import HistoryStore
    from planner.service.instance import Instance
    from planner.service.locations import models_dir

    if isinstance(source, Instance):
        yield source
    elif isinstance(source, HistoryStore):
        yield Instance(source, models_dir(None, pipeline.state_dir))
    else:
        with open_history(source) as store:
            yield Instance(store, models_dir(None, pipeline.state_dir))


def _with_cadence(pipeline: Pipeline, cadence_s: float | None) -> Pipeline:
    if cadence_s is None:
        return pipeline
    schedule = pipeline.schedule.model_copy(update={"cadence": float(cadence_s), "cron": None})
    return pipeline.model_copy(update={"schedule": schedule})


WHAT_IF_COLUMNS: tuple[Column, ...] = (
    Column("concurrency", "int64", "tasks", "tasks at once in the plan"),
    Column("scale", "float64", "", "factor on the per-account steps' quantities (1: the file's)"),
    Column("quantity", "float64", "", "the quantity given to every step (NaN: the file's)"),
    Column("predicted_s", "float64", "s", "the run's predicted duration"),
    Column("bound_s", "float64", "s", "the run's calibrated upper bound"),
    Column("memory_mb", "float64", "MB", "memory needed: concurrency x memory per task"),
    Column("memory_per_task_mb", "float64", "MB", "memory per task the plan counts (NaN: unknown)"),
    Column("free_memory_mb", "float64", "MB", "free memory of this machine now"),
    Column("fits_cpu", "boolean", "", "the concurrency fits the CPU at the tasks' CPU share"),
    Column("fits_memory", "boolean", "", "memory_mb fits 80 % of the free memory"),
    Column("cadence_s", "float64", "s", "the cadence asked, else the file's (NaN: none)"),
    Column("fits_cadence", "boolean", "", "bound_s <= cadence_s (<NA>: no cadence)"),
    Column("cadence_needed_s", "float64", "s", "the shortest cadence that fits: bound x "
           "(1 + min_margin)"),
    Column("planned", "boolean", "", "the concurrency the file's setting plans (auto or fixed)"),
)  # fmt: skip


def _row(
    plan: Plan, pipeline: Pipeline, cpu_count: int | None, planned: int, **given: Any
) -> dict[str, Any]:
    from planner.planning.concurrency import cpu_limit, memory_limit

    per_task = plan.memory_per_task_mb
    by_mem = memory_limit(plan.free_memory_mb, per_task)
    cadence = pipeline.schedule.cadence
    return {
        "concurrency": plan.concurrency,
        "predicted_s": plan.run.predicted_s,
        "bound_s": plan.run.bound_s,
        "memory_mb": None if per_task is None else plan.concurrency * per_task,
        "memory_per_task_mb": per_task,
        "free_memory_mb": plan.free_memory_mb,
        "fits_cpu": plan.concurrency <= cpu_limit(cpu_count, plan.cpu_per_task),
        "fits_memory": by_mem is None or plan.concurrency <= by_mem,
        "cadence_s": cadence,
        "fits_cadence": None if cadence is None else plan.run.bound_s <= cadence,
        "cadence_needed_s": plan.run.bound_s * (1 + pipeline.schedule.min_margin),
        "planned": plan.concurrency == planned,
        **given,
    }


@documented(WHAT_IF_COLUMNS)
def concurrency_what_if(
    source: Source,
    pipeline: PipelineRef,
    concurrencies: Sequence[int] | None = None,
    quantity: float | None = None,
    cadence: float | None = None,
) -> pd.DataFrame:
    """The run of ``pipeline`` planned at each of ``concurrencies``, one row each, by
    concurrency: its predicted duration, bound and the memory it needs. ``quantity`` is
    given to every step (``planner plan --quantity``); ``cadence`` (seconds) replaces the
    file's. By default every concurrency up to the most tasks that can run at once (when
    that is at most 16), else the counts ``planner plan`` shows, with the smallest that
    fits the cadence."""
    from planner.service.planning import PlanRequest, make_plan

    chosen = _with_cadence(_load(pipeline), cadence)
    with _instance(source, chosen) as instance:
        frame = instance.store.attempts_frame(pipeline=chosen.name)
        cpu_count = instance.machine.read().cpu_count
        base = make_plan(instance, chosen, PlanRequest(quantity=quantity), frame=frame)
        if concurrencies is None:
            widest = base.widest or base.concurrency
            counts = (
                list(range(1, widest + 1))
                if widest <= _EVERY_COUNT_UP_TO
                else [w.concurrency for w in base.what_if]
            )
        else:
            counts = list(concurrencies)
        rows = []
        for count in sorted({int(c) for c in counts}):
            if count < 1:
                raise ValueError(f"a concurrency is at least 1, got {count}")
            plan = make_plan(
                instance, chosen, PlanRequest(concurrency=count, quantity=quantity), frame=frame
            )
            rows.append(
                _row(plan, chosen, cpu_count, base.concurrency, scale=1.0, quantity=quantity)
            )
    return typed_frame(rows, WHAT_IF_COLUMNS)


@documented(WHAT_IF_COLUMNS)
def quantity_what_if(
    source: Source,
    pipeline: PipelineRef,
    scales: Sequence[float] = _DEFAULT_SCALES,
    concurrency: int | None = None,
    cadence: float | None = None,
) -> pd.DataFrame:
    """The run of ``pipeline`` planned with the quantities of its per-account steps
    multiplied by each of ``scales`` (as the demo varies them), one row each, by scale, at
    ``concurrency`` (default: what the file's setting plans for that work)."""
    from planner.service.demo import scaled
    from planner.service.planning import PlanRequest, make_plan

    chosen = _with_cadence(_load(pipeline), cadence)
    with _instance(source, chosen) as instance:
        frame = instance.store.attempts_frame(pipeline=chosen.name)
        cpu_count = instance.machine.read().cpu_count
        rows = []
        for scale in sorted({float(s) for s in scales}):
            if scale <= 0:
                raise ValueError(f"a scale is more than 0, got {scale:g}")
            work = scaled(chosen, scale)
            base = make_plan(instance, work, PlanRequest(), frame=frame)
            plan = (
                base
                if concurrency is None
                else make_plan(instance, work, PlanRequest(concurrency=concurrency), frame=frame)
            )
            rows.append(_row(plan, work, cpu_count, base.concurrency, scale=scale))
    return typed_frame(rows, WHAT_IF_COLUMNS)


@dataclass(frozen=True)
class CadenceFit:
    """The answer of :func:`fits_cadence`: ``value`` is the concurrency (or scale) found,
    ``None`` when none tried fits; the figures are of that row (of the fastest row when
    none fits); ``within_machine``: it fits the CPU and the memory too."""

    by: str
    value: float | None
    cadence_s: float
    predicted_s: float
    bound_s: float
    memory_mb: float | None
    within_machine: bool
    cadence_needed_s: float
    text: str


def fits_cadence(
    frame: pd.DataFrame,
    cadence_s: float | None = None,
    *,
    by: Literal["concurrency", "scale"] = "concurrency",
) -> CadenceFit:
    """From a what-if frame: the smallest concurrency (``by="concurrency"``) or the largest
    quantity scale (``by="scale"``) whose bound fits ``cadence_s`` (default: the frame's
    cadence), preferring one that fits the CPU and the memory."""
    import pandas as pd

    from planner.units import format_duration

    if frame.empty:
        raise ValueError("the what-if frame is empty")
    if cadence_s is None:
        known = frame["cadence_s"].dropna()
        if known.empty:
            raise ValueError("no cadence: give cadence_s, or plan with a cadence")
        cadence_s = float(known.iloc[0])
    ordered = frame.sort_values(by, ascending=by == "concurrency", kind="stable")
    fitting = ordered[ordered["bound_s"] <= cadence_s]
    machine = (fitting["fits_cpu"] & fitting["fits_memory"]).fillna(False).astype(bool)
    best = fitting[machine] if machine.any() else fitting
    found = not best.empty
    row = best.iloc[0] if found else ordered.iloc[int(ordered["bound_s"].to_numpy().argmin())]
    memory = None if pd.isna(row["memory_mb"]) else float(row["memory_mb"])
    limits = (("CPU", "fits_cpu"), ("memory", "fits_memory"))
    beyond = [name for name, fits in limits if not bool(row[fits])]
    inside = not beyond
    value = (int(row[by]) if by == "concurrency" else float(row[by])) if found else None
    what = f"concurrency {row['concurrency']}" if by == "concurrency" else f"x{row['scale']:g}"
    needs = f"{memory:.0f} MB" if memory is not None else "unknown memory"
    figures = (
        f"bound {format_duration(row['bound_s'])}, predicted "
        f"{format_duration(row['predicted_s'])}, {needs}"
        + ("" if inside else f", beyond this machine's {' and '.join(beyond)}")
    )
    noun = "concurrency" if by == "concurrency" else "quantity scale"
    text = (
        f"{what} fits a {format_duration(cadence_s)} cadence: {figures}"
        if found
        else f"no {noun} tried fits a {format_duration(cadence_s)} cadence; the fastest "
        f"({what}: {figures}) needs a cadence of {format_duration(row['cadence_needed_s'])}"
    )
    return CadenceFit(
        by=by,
        value=value,
        cadence_s=cadence_s,
        predicted_s=float(row["predicted_s"]),
        bound_s=float(row["bound_s"]),
        memory_mb=memory,
        within_machine=inside,
        cadence_needed_s=float(row["cadence_needed_s"]),
        text=text,
    )


OVERVIEW_COLUMNS: tuple[Column, ...] = (
    Column("pipeline", "string", "", "pipeline name"),
    Column("file", "string", "", "its pipeline file"),
    Column("concurrency", "int64", "tasks", "the concurrency its file's setting plans"),
    Column("predicted_s", "float64", "s", "the next run's predicted duration"),
    Column("bound_s", "float64", "s", "its calibrated upper bound"),
    Column("memory_mb", "float64", "MB", "memory needed at that concurrency"),
    Column("cadence_s", "float64", "s", "the file's cadence (NaN: none)"),
    Column("fits_cadence", "boolean", "", "bound_s <= cadence_s (<NA>: no cadence)"),
    Column("cadence_needed_s", "float64", "s", "bound x (1 + min_margin)"),
)


@documented(OVERVIEW_COLUMNS)
def cadence_overview(source: Source, pipelines: Sequence[PipelineRef]) -> pd.DataFrame:
    """One row per pipeline as ``planner plan`` plans its next run on ``source``'s
    history, the longest bound first: the first row is the pipeline hardest to fit."""
    from planner.service.planning import make_plan

    rows = []
    for ref in pipelines:
        pipeline = _load(ref)
        with _instance(source, pipeline) as instance:
            plan = make_plan(instance, pipeline)
            cpu_count = instance.machine.read().cpu_count
        row = _row(plan, pipeline, cpu_count, plan.concurrency)
        row["pipeline"] = pipeline.name
        row["file"] = str(pipeline.source) if pipeline.source else None
        rows.append(row)
    rows.sort(key=lambda r: -float(r["bound_s"]))
    return typed_frame(rows, OVERVIEW_COLUMNS)


def plan_advice(source: Source, pipeline: PipelineRef, cadence: float | None = None) -> list[str]:
    """The recommendations of the plan of ``pipeline``'s next run (with ``cadence``
    seconds instead of the file's), in the planner's words, most important first."""
    from planner.service.planning import make_plan

    chosen = _with_cadence(_load(pipeline), cadence)
    with _instance(source, chosen) as instance:
        plan = make_plan(instance, chosen)
    return [r.text for r in plan.recommendations]


def plot_what_if(
    frame: pd.DataFrame,
    cadence_s: float | None = None,
    *,
    by: Literal["concurrency", "scale"] = "concurrency",
) -> Figure:
    """The predicted run and its bound (band) by concurrency (or quantity scale) from a
    what-if frame, the cadence as a red line, and the memory each needs (grey bars, right
    axis), the dashed line at what the file's setting plans now. Where the band's top is
    under the red line the run fits; a hollow point is beyond the machine's CPU or memory."""
    figure, axes = new_figure()
    if frame.empty:
        no_data(axes, "no what-if rows")
        return figure
    ordered = frame.sort_values(by)
    x = ordered[by].to_numpy(dtype=float)
    inside = (ordered["fits_cpu"] & ordered["fits_memory"]).fillna(False).to_numpy(dtype=bool)
    memory = ordered["memory_mb"].to_numpy(dtype=float)
    if ordered["memory_mb"].notna().any():
        twin = axes.twinx()
        width = 0.6 * (min(x[1:] - x[:-1]) if len(x) > 1 else 1.0)
        twin.bar(x, memory, width=width, color="lightgrey", zorder=0, label="memory")
        twin.set_ylabel("memory needed (MB)")
        axes.set_zorder(twin.get_zorder() + 1)
        axes.patch.set_visible(False)
    predicted, bound = ordered["predicted_s"].to_numpy(), ordered["bound_s"].to_numpy()
    axes.fill_between(x, predicted, bound, alpha=0.25, color="tab:blue", label="up to the bound")
    axes.plot(x, predicted, color="tab:blue", label="predicted run")
    axes.scatter(x[inside], bound[inside], color="tab:blue", zorder=3)
    axes.scatter(x[~inside], bound[~inside], facecolor="white", edgecolor="tab:blue", zorder=3)
    planned = ordered[ordered["planned"].fillna(False).astype(bool)]
    for value in planned[by].to_numpy(dtype=float)[:1]:
        axes.axvline(value, color="grey", lw=1, linestyle="--", label="planned now")
    known = ordered["cadence_s"].dropna()
    line = cadence_s if cadence_s is not None else (float(known.iloc[0]) if len(known) else None)
    if line is not None:
        axes.axhline(line, color="red", lw=1.2, label=f"cadence {line:g}s")
    axes.set_xlabel("concurrency" if by == "concurrency" else "quantity scale")
    axes.set_ylabel("run duration (s)")
    axes.set_ylim(bottom=0)
    axes.set_title("the run by " + ("concurrency" if by == "concurrency" else "quantity"))
    axes.legend(fontsize="small", loc="best")
    return figure
