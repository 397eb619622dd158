"""Watch a run against its plan while it runs: the ETA, the alert levels, the alerts.

:class:`RunMonitor` is a run observer placed between the runner and the front end's
display: it forwards every event, feeds the :class:`~planner.monitoring.watch.Watcher`
with task starts and ends, and evaluates it every ``tick_s`` seconds on a thread of its
own (the run loop is never slowed: alerts go to the
:class:`~planner.monitoring.delivery.AlertDispatcher`, which stores them at once and
delivers on its own thread). The display gets :class:`RunProgress` (the ETA) and
:class:`AlertRaised` events. At the end: ``run_failed`` when the run failed,
``retries_exhausted`` for every task that failed for good, and ``model_drift`` when the
last runs' own plans show the predictions drifting (:mod:`planner.monitoring.drift`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from planner.monitoring.alerts import Alert
from planner.monitoring.drift import planned_vs_actual
from planner.monitoring.watch import Signal, Thresholds, Watcher

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.execution import RunEvent, RunObserver
    from planner.history import AttemptRecord, HistoryStore, RunRecord
    from planner.monitoring.delivery import AlertDispatcher
    from planner.planning.model import Plan
    from planner.service.instance import Instance

__all__ = [
    "AlertRaised",
    "LateTask",
    "Progress",
    "RunMonitor",
    "RunProgress",
    "run_progress",
]

_NO_HISTORY = "default"
#: The last runs whose plans judge whether the predictions drift.
DRIFT_RUNS = 10


@dataclass(frozen=True)
class RunProgress:
    """The run's ETA, for displays (sent after every evaluation)."""

    run_id: str
    elapsed_s: float
    eta: datetime | None
    predicted_s: float | None
    bound_s: float | None


@dataclass(frozen=True)
class AlertRaised:
    """An alert fired (already stored and queued for its sinks)."""

    alert: Alert


class RunMonitor:
    """See the module docstring. Use as the runner's observer; :meth:`close` at the end."""

    def __init__(
        self,
        instance: Instance,
        pipeline: Pipeline,
        plan: Plan,
        dispatcher: AlertDispatcher,
        *,
        downstream: RunObserver | None = None,
        tick_s: float = 1.0,
    ) -> None:
        self.instance = instance
        self.pipeline = pipeline
        self.plan = plan
        self.dispatcher = dispatcher
        self.downstream = downstream
        self.tick_s = tick_s
        self.run_id: str | None = None
        self.watcher: Watcher | None = None
        #: the last error of the ticking thread (it keeps going: watching never stops a run)
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: list[tuple[str, str | None, int, str]] = []

    # -- the observer ----------------------------------------------------------------------

    def on_event(self, event: RunEvent) -> None:
        from planner.execution import (
            LimitChanged,
            RunFinished,
            RunStarted,
            TaskFinished,
            TaskStarted,
        )
        from planner.status import AttemptStatus

        now = self.instance.clock.now()
        raised: list[Alert] = []
        with self._lock:
            match event:
                case RunStarted(run_id=run_id, concurrency=concurrency):
                    self.run_id = run_id
                    self.watcher = self._watcher(now, concurrency)
                    raised = self._post(self.watcher.start(), now)
                case TaskStarted(key=key) if self.watcher is not None:
                    self.watcher.task_started((key.step, key.account), now)
                case TaskFinished(key=key, status=status, attempt=attempt) if self.watcher:
                    self.watcher.task_finished((key.step, key.account), now)
                    if status not in (AttemptStatus.SUCCEEDED, AttemptStatus.CANCELLED):
                        why = f"{status}, exit {event.exit_code}, class {event.error_class}"
                        self._failed.append((key.step, key.account, attempt, why))
                case LimitChanged(new=new) if self.watcher is not None:
                    self.watcher.slots = max(1, new)  # the ETA follows an adaptive limit
                case RunFinished(result=result):
                    raised = self._finished(result.status, now)
        if isinstance(event, RunStarted):
            self._start_ticking()
        if isinstance(event, RunFinished):
            self._stop_ticking()
        if self.downstream is not None:
            self.downstream.on_event(event)
            for alert in raised:
                self.downstream.on_event(AlertRaised(alert))  # type: ignore[arg-type]

    # -- evaluation ------------------------------------------------------------------------

    def tick(self) -> list[Alert]:
        """Evaluate now: post what fired, show the ETA (the thread calls it)."""
        now = self.instance.clock.now()
        with self._lock:
            watcher, run_id = self.watcher, self.run_id
            if watcher is None or run_id is None:
                return []
            raised = self._post(watcher.evaluate(now), now)
            eta = watcher.eta
            elapsed = (now - watcher.started_at).total_seconds()
        if self.downstream is not None:
            progress = RunProgress(
                run_id, elapsed, eta, self.plan.run.predicted_s, self.plan.run.bound_s
            )
            self.downstream.on_event(progress)  # type: ignore[arg-type]
            for alert in raised:
                self.downstream.on_event(AlertRaised(alert))  # type: ignore[arg-type]
        return raised

    def close(self) -> None:
        """Stop the ticking thread (idempotent; the dispatcher is the caller's)."""
        self._stop_ticking()

    def _watcher(self, now: datetime, concurrency: int) -> Watcher:
        alerts = self.pipeline.alerts
        tasks = {
            (t.step, t.account): (t.predicted_s, t.bound_s, t.source != _NO_HISTORY)
            for t in self.plan.tasks
        }
        known = any(known for *_rest, known in tasks.values())
        return Watcher(
            tasks=tasks,
            deps={s.id: list(s.depends_on) for s in self.pipeline.steps},
            slots=concurrency,
            run_predicted_s=self.plan.run.predicted_s if known else None,
            run_bound_s=self.plan.run.bound_s if known else None,
            started_at=now,
            thresholds=Thresholds(
                warning=alerts.warning,
                critical=alerts.critical,
                stuck=alerts.stuck,
                min_excess_s=float(alerts.min_excess),
            ),
            # a collision needs a schedule: a pipeline run by hand has no next start
            next_start=self.plan.interval.next_start if self._scheduled() else None,
        )

    def _scheduled(self) -> bool:
        schedule = self.pipeline.schedule
        return schedule.cadence is not None or schedule.cron is not None

    def _post(self, signals: list[Signal], now: datetime) -> list[Alert]:
        eta = self.watcher.eta if self.watcher is not None else None
        out = []
        for s in signals:
            alert = Alert(
                level=s.level,
                kind=s.kind,
                pipeline=self.pipeline.name,
                run_id=self.run_id,
                step=s.step,
                account=s.account,
                elapsed_s=None if s.elapsed_s is None else round(s.elapsed_s, 3),
                predicted_s=s.predicted_s,
                bound_s=s.bound_s,
                eta=eta,
                text=s.text,
                at=now,
            )
            self.dispatcher.post(alert)
            out.append(alert)
        return out

    def _finished(self, status: str, now: datetime) -> list[Alert]:
        signals = [
            Signal(
                "warning",
                "retries_exhausted",
                step,
                account,
                None,
                None,
                None,
                f"{_label(step, account)} failed for good after {attempt} attempt(s) ({why})",
            )
            for step, account, attempt, why in self._failed
        ]
        if status == "failed":
            signals.append(
                Signal(
                    "critical",
                    "run_failed",
                    None,
                    None,
                    None,
                    self.plan.run.predicted_s,
                    self.plan.run.bound_s,
                    f"run {self.run_id} failed: {len(self._failed)} task(s) failed for good",
                )
            )
        drift = self._drift()
        if drift is not None:
            signals.append(drift)
        return self._post(signals, now)

    def _drift(self) -> Signal | None:
        from planner.errors import PlannerError
        from planner.monitoring.drift import drift_signal, prediction_quality

        store = self.instance.store
        try:
            rows = planned_vs_actual(store, self.pipeline.name, DRIFT_RUNS)
            recent = store.list_runs(self.pipeline.name, limit=DRIFT_RUNS)
            since = min((r.started_at for r in recent), default=None)
            said = [
                a for a in store.alerts(self.pipeline.name, since=since) if a.kind == "model_drift"
            ]
        except PlannerError:  # a drift check never fails a finished run
            return None
        if said:  # said once per window of runs, not after every run
            return None
        alerts = self.pipeline.alerts
        return drift_signal(
            prediction_quality(rows),
            target=self.pipeline.schedule.quantile,
            coverage_slack=alerts.drift_coverage,
            max_mdape=alerts.drift_mdape,
        )

    # -- the thread ------------------------------------------------------------------------

    def _start_ticking(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="planner-monitor", daemon=True)
        self._thread.start()

    def _stop_ticking(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"


def _label(step: str, account: str | None) -> str:
    return f"{step}[{account}]" if account else step


@dataclass(frozen=True)
class LateTask:
    """A running task past its bound."""

    step: str
    account: str | None
    elapsed_s: float
    predicted_s: float
    bound_s: float


@dataclass(frozen=True)
class Progress:
    """Where a run stands at ``now``, from its stored plan and attempts (any front end,
    any host: nothing but the history is read)."""

    run_id: str
    status: str
    elapsed_s: float
    done: int
    running: int
    total: int
    predicted_s: float | None
    bound_s: float | None
    eta: datetime | None
    late: tuple[LateTask, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "elapsed_s": round(self.elapsed_s, 3),
            "tasks": {"done": self.done, "running": self.running, "total": self.total},
            "predicted_s": self.predicted_s,
            "bound_s": self.bound_s,
            "eta": self.eta.isoformat() if self.eta else None,
            "late": [
                {
                    "step": t.step,
                    "account": t.account,
                    "elapsed_s": round(t.elapsed_s, 3),
                    "predicted_s": t.predicted_s,
                    "bound_s": t.bound_s,
                }
                for t in self.late
            ],
        }


def run_progress(
    store: HistoryStore,
    run_id: str,
    now: datetime,
    deps: Mapping[str, Sequence[str]] | None = None,
) -> Progress | None:
    """The progress of ``run_id`` at ``now``: done and running tasks, the ETA (the watcher's
    rule on the run's stored plan; ``deps``, the pipeline's step graph, when known) and the
    running tasks past their bound; None when the run is unknown."""
    record = store.get_run(run_id)
    if record is None:
        return None
    plans = store.plans(record.pipeline, limit=1, run_id=run_id)
    document = plans[0].document if plans else {}
    planned = {
        (t["step"], t["account"]): (
            float(t["predicted_s"]),
            float(t["bound_s"]),
            t.get("source") != _NO_HISTORY,
        )
        for t in document.get("tasks", [])
    }
    started_at = record.started_at
    last: dict[tuple[str, str | None], AttemptRecord] = {}
    for attempt in store.attempts_for_run(run_id):
        last[(attempt.step, attempt.account)] = attempt
    run = document.get("run", {})
    watcher = Watcher(
        tasks=planned or {key: (0.0, 0.0, False) for key in last},
        deps=deps or {},
        slots=_limit_now(store, record),
        run_predicted_s=run.get("predicted_s"),
        run_bound_s=run.get("bound_s"),
        started_at=started_at,
    )
    late: list[LateTask] = []
    running = done = 0
    end = record.finished_at or now
    for key, a in last.items():
        watcher.task_started(key, a.started_at)
        if a.finished_at is None and a.status == "running":
            running += 1
            elapsed = (end - a.started_at).total_seconds()
            plan = planned.get(key)
            if plan is not None and plan[2] and elapsed > plan[1]:
                late.append(LateTask(key[0], key[1], elapsed, plan[0], plan[1]))
        else:
            done += 1
            watcher.task_finished(key, a.finished_at or end)
    eta: datetime | None = record.finished_at
    if record.finished_at is None and planned:
        watcher.evaluate(now)
        eta = watcher.eta
    return Progress(
        run_id=run_id,
        status=record.status,
        elapsed_s=(end - started_at).total_seconds(),
        done=done,
        running=running,
        total=max(len(planned), len(last)),
        predicted_s=run.get("predicted_s"),
        bound_s=run.get("bound_s"),
        eta=eta,
        late=tuple(sorted(late, key=lambda t: t.elapsed_s - t.bound_s, reverse=True)),
    )


def _limit_now(store: HistoryStore, record: RunRecord) -> int:
    """The run's concurrency limit as last recorded (an adaptive limit moves)."""
    changes = store.limit_changes(record.run_id)
    return max(1, int(changes[-1]["to"]) if changes else record.concurrency or 1)
