"""Run a pipeline by its plan: the use case behind ``planner run`` (and the daemon's runs).

:func:`prepare_run` resolves what will run (the selection, or what a resumed run left),
plans exactly those tasks, and turns the plan into the runner's directives:

- the run's concurrency is the plan's (``auto``: the same function and the same answer
  as ``planner plan`` on the same history and machine);
- ready tasks start longest predicted first (the order the plan's LPT schedule assumes);
- a task of a step with ``timeout: auto`` gets ``max(floor, bound x factor)`` (the
  pipeline's ``auto_timeout``); one with no history runs without a timeout, said once.

:meth:`RunSession.execute` runs it; the plan is stored with the run's id as soon as the
run exists, so prediction error can be followed run by run.

Where tasks run: the pipeline's ``executor`` section, or the one given (``--executor``
wins over the file). On a Dask cluster (:func:`build_executor`) the plan is made for the
cluster (:class:`~planner.service.machine.DaskMachine`: its slots and its workers'
memory), ``auto`` concurrency never exceeds the cluster's slots (more would only queue
on the scheduler, and count the queueing as run time), and the executor stops the run
through the runner's control when the scheduler connection is lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.planning.model import DEFAULT_SOURCE
from planner.service.planning import PlanRequest, make_plan, save_plan

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.config.models import Executor as ExecutorSettings
    from planner.execution import (
        AdaptiveBounds,
        Executor,
        PreparedRun,
        RunDirectives,
        Runner,
        RunObserver,
        RunRequest,
        RunResult,
    )
    from planner.execution.control import RunControl
    from planner.monitoring.delivery import AlertDispatcher
    from planner.planning.model import Plan
    from planner.service.instance import Instance
    from planner.service.monitor import RunMonitor

__all__ = ["RunOutcome", "RunSession", "build_executor", "directives_for", "prepare_run"]


@dataclass(frozen=True)
class RunOutcome:
    """A finished run and the plan it followed."""

    result: RunResult
    plan: Plan


def directives_for(pipeline: Pipeline, plan: Plan) -> tuple[RunDirectives, list[str]]:
    """What ``plan`` tells the runner, and one-line notes for the operator."""
    from planner.execution import RunDirectives, TaskKey

    auto_steps = {s.id for s in pipeline.steps if s.timeout == "auto"}
    priority: dict[TaskKey, float] = {}
    timeouts: dict[TaskKey, float] = {}
    unknown: Counter[str] = Counter()
    no_timeout: Counter[str] = Counter()
    for task in plan.tasks:
        key = TaskKey(task.step, task.account)
        priority[key] = task.predicted_s
        known = task.source != DEFAULT_SOURCE
        if not known:
            unknown[task.step] += 1
        if task.step in auto_steps:
            if known:
                timeouts[key] = pipeline.auto_timeout.seconds(task.bound_s)
            else:
                no_timeout[task.step] += 1
    notes = []
    whole = sum(unknown.values()) == len(plan.tasks) and any(
        w.startswith("no history for pipeline") for w in plan.warnings
    )  # the predictor's warning already says every task is at the default
    if unknown and not whole:
        notes.append(
            f"{sum(unknown.values())} task(s) have no history (step(s) "
            f"{_steps(unknown)}): planned at the default estimate"
        )
    if no_timeout:
        notes.append(
            f"timeout: auto: {sum(no_timeout.values())} task(s) of step(s) {_steps(no_timeout)}"
            " have no history and run without a timeout"
        )
    directives = RunDirectives(
        concurrency=plan.concurrency,
        priority=priority,
        timeouts=timeouts,
        adaptive=adaptive_bounds(plan),
    )
    return directives, notes


def adaptive_bounds(plan: Plan) -> AdaptiveBounds | None:
    """Where an adaptive limit starts (the plan's ``auto`` answer) and the range it stays
    in (the plan's ``adaptive_range``); ``None`` unless ``concurrency: {max: adaptive}``."""
    from planner.execution.adaptive import AdaptiveBounds

    if plan.adaptive_range is None:
        return None
    low, top = plan.adaptive_range
    return AdaptiveBounds(start=plan.adaptive_start or plan.concurrency, min=low, ceiling=top)


def _steps(counts: Counter[str]) -> str:
    names = list(counts)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


class RunSession:
    """A run prepared and planned, ready to execute (see :func:`prepare_run`).

    ``runner`` is exposed for the front end's signal handling
    (:func:`planner.execution.handle_signals`)."""

    def __init__(
        self,
        instance: Instance,
        pipeline: Pipeline,
        runner: Runner,
        prepared: PreparedRun,
        plan: Plan,
    ) -> None:
        self.instance = instance
        self.pipeline = pipeline
        self.runner = runner
        self.prepared = prepared
        self.plan = plan
        self.directives, notes = directives_for(pipeline, plan)
        #: One-line notes for the operator: plan warnings, tasks without history.
        self.notes: list[str] = [*plan.warnings, *notes]
        #: Watches the run against this plan (ETA, alerts) when monitoring is on.
        self.monitor: RunMonitor | None = None
        self._dispatcher: AlertDispatcher | None = None

    def watch(self, *, tick_s: float = 1.0) -> RunMonitor:
        """Watch the run against its plan: the ETA and alerts to the pipeline's sinks
        (stored in the history at once; deliveries left from earlier runs are retried).
        The runner's observer becomes the monitor, which forwards every event to it."""
        from planner.monitoring.delivery import AlertDispatcher
        from planner.service.monitor import RunMonitor

        dispatcher = AlertDispatcher(self.pipeline, self.instance.store, clock=self.instance.clock)
        dispatcher.retry_pending()
        self._dispatcher = dispatcher
        self.monitor = RunMonitor(
            self.instance,
            self.pipeline,
            self.plan,
            dispatcher,
            downstream=self.runner.observer,
            tick_s=tick_s,
        )
        self.runner.observer = self.monitor
        return self.monitor

    def execute(self, on_started: Callable[[str], None] | None = None) -> RunOutcome:
        """Run to the end (or until stopped); the plan is stored with the run's id.

        ``on_started(run_id)`` is called once the run holds its lease and exists in the
        history (a front end prints its notes there, so a refused run says only why).
        Raises ``RunActiveError`` when another run of the pipeline is active."""
        store = self.instance.store

        def store_plan(run_id: str) -> None:
            save_plan(store, self.plan, run_id)
            if on_started is not None:
                on_started(run_id)

        try:
            result = self.runner.run(
                self.prepared, directives=self.directives, on_created=store_plan
            )
        finally:
            self.runner.executor.close()  # (idempotent: also when the run never started)
            if self.monitor is not None:
                self.monitor.close()
            if self._dispatcher is not None:  # pending deliveries get a bounded time
                self._dispatcher.close()
        return RunOutcome(result=result, plan=self.plan)


def build_executor(
    settings: ExecutorSettings, control: RunControl, *, sample_interval: float = 0.25
) -> Executor | None:
    """The executor ``settings`` describe (``None``: the runner's local default); a Dask
    executor is not connected yet."""
    if settings.kind == "local":
        return None
    from planner.execution.dask.executor import DaskExecutor

    assert settings.address is not None  # (validated)
    return DaskExecutor(
        settings.address,
        connect_timeout=settings.connect_timeout,
        worker_wait_s=settings.worker_wait,
        sample_interval=sample_interval,
        control=control,
    )


def prepare_run(
    instance: Instance,
    pipeline: Pipeline,
    request: RunRequest,
    *,
    observer: RunObserver | None = None,
    executor: ExecutorSettings | None = None,
) -> RunSession:
    """Resolve what ``request`` runs and plan it (nothing is written yet); ``executor``:
    where tasks run (default: the pipeline's ``executor``). Raises
    :class:`~planner.errors.ClusterError` when a Dask cluster has no worker in time."""
    from planner.execution import RunControl, Runner
    from planner.service.instance import Instance as InstanceType
    from planner.service.machine import DaskMachine

    control = RunControl()
    tasks_on = build_executor(
        executor or pipeline.executor, control, sample_interval=request.sample_interval
    )
    runner = Runner(
        pipeline,
        instance.store,
        request,
        clock=instance.clock,
        observer=observer,
        executor=tasks_on,
        control=control,
    )
    prepared = runner.prepare()
    planner_of = instance
    if tasks_on is not None:  # planned for the cluster: its slots cap auto (see DaskMachine)
        from planner.execution.dask.executor import DaskExecutor

        assert isinstance(tasks_on, DaskExecutor)
        planner_of = InstanceType(
            instance.store, instance.models_dir, clock=instance.clock, machine=DaskMachine(tasks_on)
        )
    try:
        plan = make_plan(
            planner_of,
            pipeline,
            PlanRequest(
                steps=[s.id for s in prepared.steps],
                accounts=list(prepared.accounts),
                concurrency=request.concurrency,
                tasks=prepared.tasks,
            ),
        )
        session = RunSession(instance, pipeline, runner, prepared, plan)
    except BaseException:
        if tasks_on is not None:
            tasks_on.close()
        raise
    return session
