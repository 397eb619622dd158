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
    from planner.execution import (
        PreparedRun,
        RunDirectives,
        Runner,
        RunObserver,
        RunRequest,
        RunResult,
    )
    from planner.monitoring.delivery import AlertDispatcher
    from planner.planning.model import Plan
    from planner.service.instance import Instance
    from planner.service.monitor import RunMonitor

__all__ = ["RunOutcome", "RunSession", "directives_for", "prepare_run"]


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
    directives = RunDirectives(concurrency=plan.concurrency, priority=priority, timeouts=timeouts)
    return directives, notes


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
            if self.monitor is not None:
                self.monitor.close()
            if self._dispatcher is not None:  # pending deliveries get a bounded time
                self._dispatcher.close()
        return RunOutcome(result=result, plan=self.plan)


def prepare_run(
    instance: Instance,
    pipeline: Pipeline,
    request: RunRequest,
    *,
    observer: RunObserver | None = None,
) -> RunSession:
    """Resolve what ``request`` runs and plan it (nothing is written yet)."""
    from planner.execution import Runner

    runner = Runner(pipeline, instance.store, request, clock=instance.clock, observer=observer)
    prepared = runner.prepare()
    plan = make_plan(
        instance,
        pipeline,
        PlanRequest(
            steps=[s.id for s in prepared.steps],
            accounts=list(prepared.accounts),
            concurrency=request.concurrency,
            tasks=prepared.tasks,
        ),
    )
    return RunSession(instance, pipeline, runner, prepared, plan)
