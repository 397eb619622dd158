"""Run one pipeline once (or resume a run): prepare, take the guards, loop, record.

:meth:`Runner.prepare` resolves what will run (reading the history only: a resumed run's
chain); :meth:`Runner.run` takes the file lock and the lease, creates the run, calls
``on_created(run_id)`` (a service stores the run's plan there), runs the loop
(:mod:`planner.execution.loop`) on the executor (local processes unless told otherwise)
following the :class:`RunDirectives` (a plan's start order, ``timeout: auto`` and
concurrency), and closes the run. Stopping goes through the runner's
:class:`~planner.execution.control.RunControl` (:func:`handle_signals` wires SIGINT and
SIGTERM to it).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from planner.clock import SYSTEM_CLOCK, Clock
from planner.config.models import Pipeline, Step
from planner.config.selection import select_steps
from planner.errors import PlannerError, UsageError
from planner.execution.adaptive import AdaptiveBounds
from planner.execution.control import LoopSettings, RunControl
from planner.execution.events import RunFinished, RunObserver, RunResult, RunStarted
from planner.execution.executor import Executor, LocalExecutor
from planner.execution.guards import acquire_run_guards, lease_ttl
from planner.execution.launches import TaskLaunches
from planner.execution.load import LoadProbe
from planner.execution.loop import RunLoop
from planner.execution.pressure import MemoryProbe
from planner.execution.recorder import RunRecorder
from planner.execution.stopping import handle_signals as _handle_signals
from planner.execution.tasks import TaskGraph, TaskKey
from planner.history.limits import START_REASON
from planner.history.reconnect import WRITE_RETRY_S, retry_disconnects
from planner.hosts import host_id
from planner.status import AttemptStatus, RunStatus

if TYPE_CHECKING:
    from planner.history import HistoryStore, RunRecord

__all__ = [
    "PreparedRun",
    "RunDirectives",
    "RunRequest",
    "Runner",
    "auto_concurrency",
    "handle_signals",
    "new_run_id",
]

_DEFAULT_TASK_MEMORY = 512 * 1024 * 1024


@dataclass(frozen=True)
class RunRequest:
    """What to run and how; defaults run every step for every account.

    ``concurrency``, when given, wins over the directives' (an operator's explicit choice).
    ``sample_interval`` is the default executor's (``LocalExecutor``) sampling period.
    ``run_id``: the new run's id (default: :func:`new_run_id`); the daemon names the runs it
    starts so that it can find them."""

    steps: Sequence[str] | None = None
    with_deps: bool = False
    accounts: Sequence[str] | None = None
    resume: str | None = None
    concurrency: int | None = None
    stop_grace: float = 10.0
    kill_grace: float = 5.0
    sample_interval: float = 0.25
    run_id: str | None = None


@dataclass(frozen=True)
class RunDirectives:
    """What a plan decides for a run.

    ``concurrency``: tasks at once (when the request gives none; neither: the pipeline's
    ``concurrency.max``, or the machine's ``auto``). ``priority``: ready tasks start
    highest first (a plan's predicted seconds: longest first). ``timeouts``: seconds for
    tasks of steps with ``timeout: auto``; such a task missing here runs without one.
    ``adaptive``: the limit adapts within these bounds (``concurrency: {max: adaptive}``),
    starting at their ``start``; an explicit request's concurrency makes it fixed."""

    concurrency: int | None = None
    priority: Mapping[TaskKey, float] = field(default_factory=dict)
    timeouts: Mapping[TaskKey, float] = field(default_factory=dict)
    adaptive: AdaptiveBounds | None = None


@dataclass(frozen=True)
class PreparedRun:
    """What a run will do, resolved before anything is taken or written.

    ``done``: tasks that succeeded in the resumed run's chain (not run again);
    ``tasks``: the tasks that will run, in graph order; ``selection``: as stored with the
    run (``{"steps": [...], "accounts": [...]}``)."""

    steps: tuple[Step, ...]
    accounts: tuple[str, ...]
    done: frozenset[TaskKey]
    tasks: tuple[TaskKey, ...]
    selection: dict[str, Any] = field(hash=False)


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id: ``20261126T130501Z-1a2b3c``."""
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def auto_concurrency(pipeline: Pipeline) -> int:
    """The pipeline's ``concurrency.max``, or the planner's ``auto`` rule on this machine:
    CPU cores - 1 (at least 1), and no more tasks than fit in 80 % of the free memory at
    ``memory_per_task`` each (512 MiB when that is ``auto`` and nothing better is known)."""
    if isinstance(pipeline.concurrency.max, int):
        return pipeline.concurrency.max
    import psutil

    from planner.planning.concurrency import choose_concurrency

    per_task = pipeline.concurrency.memory_per_task
    per_task_bytes = per_task if isinstance(per_task, int) else _DEFAULT_TASK_MEMORY
    choice = choose_concurrency(
        "auto",
        cpu_count=psutil.cpu_count(),
        free_memory_mb=psutil.virtual_memory().available / 2**20,
        peak_mb_per_task=per_task_bytes / 2**20,
    )
    return choice.concurrency


def handle_signals(target: Runner | RunControl) -> AbstractContextManager[None]:
    """SIGINT and SIGTERM request a stop of ``target`` while the block runs (main thread)."""
    control = target.control if isinstance(target, Runner) else target
    return _handle_signals(control.request_stop)


class Runner:
    """Runs one pipeline once (or resumes a run), recording everything in ``store``.

    ``executor``: where tasks run (default: a :class:`LocalExecutor`); ``control``: the
    stop switch to share (default: a new one, ``runner.control``); ``memory_probe``:
    where the pipeline's ``memory_pressure`` reads the system's memory in use, and
    ``load_probe`` where an adaptive limit reads the machine's load (default: this
    machine, through psutil)."""

    def __init__(
        self,
        pipeline: Pipeline,
        store: HistoryStore,
        request: RunRequest | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        observer: RunObserver | None = None,
        host: str | None = None,
        executor: Executor | None = None,
        control: RunControl | None = None,
        memory_probe: MemoryProbe | None = None,
        load_probe: LoadProbe | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.request = request or RunRequest()
        self.clock = clock
        self.rng = rng or random.Random()
        self.observer = observer
        self.host = host or host_id()
        self.executor: Executor = executor or LocalExecutor(
            sample_interval=self.request.sample_interval
        )
        self.control = control or RunControl()
        self.memory_probe = memory_probe
        self.load_probe = load_probe

    # -- preparing ----------------------------------------------------------------------

    def prepare(self) -> PreparedRun:
        """What :meth:`run` would run; raises :class:`UsageError` for a bad ``resume`` or
        ``accounts``. Reads the history (a resumed chain), takes and writes nothing."""
        request, pipeline = self.request, self.pipeline
        steps_wanted, accounts_wanted = request.steps, request.accounts
        done: set[TaskKey] = set()
        if request.resume:
            previous = self.store.get_run(request.resume)
            if previous is None:
                raise UsageError("--resume", f"no run {request.resume!r} in {self.store.url}")
            if previous.pipeline != pipeline.name:
                raise UsageError(
                    "--resume", f"run {request.resume} is of pipeline {previous.pipeline!r}"
                )
            steps_wanted = steps_wanted or previous.selection.get("steps")
            accounts_wanted = accounts_wanted or previous.selection.get("accounts")
            done = self._succeeded_in_chain(previous)
        steps = select_steps(pipeline, steps_wanted, with_deps=request.with_deps)
        known = list(pipeline.account_list)
        if accounts_wanted is None:
            accounts = known
        else:
            unknown = [a for a in accounts_wanted if a not in known]
            if unknown:
                shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
                raise UsageError("--accounts", f"unknown accounts {unknown} (known: {shown})")
            accounts = list(accounts_wanted)
        if any(s.per_account for s in steps) and not accounts:
            raise UsageError(pipeline.name, "per-account steps but no accounts to run")
        graph = TaskGraph(steps, accounts, done)
        return PreparedRun(
            steps=tuple(steps),
            accounts=tuple(accounts),
            done=frozenset(graph.done_before),
            tasks=tuple(graph.to_run()),
            selection={
                "steps": [s.id for s in steps],
                "accounts": accounts,
                # what was asked (None: everything): a run of a subset is known exactly
                "requested": {
                    "steps": list(request.steps) if request.steps else None,
                    "accounts": list(request.accounts) if request.accounts else None,
                },
            },
        )

    def _succeeded_in_chain(self, record: RunRecord) -> set[TaskKey]:
        """Tasks that succeeded in ``record``'s run or in the runs it resumed, in turn."""
        done: set[TaskKey] = set()
        seen: set[str] = set()
        current: RunRecord | None = record
        while current is not None and current.run_id not in seen:
            seen.add(current.run_id)
            last: dict[TaskKey, str] = {}
            for attempt in self.store.attempts_for_run(current.run_id):
                last[TaskKey(attempt.step, attempt.account)] = attempt.status
            done |= {k for k, status in last.items() if status == AttemptStatus.SUCCEEDED}
            parent = current.resumed_from
            current = self.store.get_run(parent) if parent else None
        return done

    # -- running ------------------------------------------------------------------------

    def _close_failed_run(self, run_id: str) -> None:
        """The run failed before its end: leave no ``running`` row behind (best effort)."""
        try:
            self.store.interrupt_running(run_id, self.clock.now())
            self.store.finish_run(run_id, status=RunStatus.FAILED, finished_at=self.clock.now())
        except PlannerError:
            pass

    def run(
        self,
        prepared: PreparedRun | None = None,
        *,
        directives: RunDirectives | None = None,
        on_created: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Run to the end (or until stopped); raises ``RunActiveError`` when another runs.

        ``prepared``: from :meth:`prepare` (else prepared now). ``on_created(run_id)`` is
        called once the run exists, before any task starts; when it raises, the run is
        closed ``failed`` and the error propagates."""
        from planner.history import LeaseOwner

        prepared = prepared or self.prepare()
        directives = directives or RunDirectives()
        request = self.request
        graph = TaskGraph(prepared.steps, prepared.accounts, prepared.done, directives.priority)
        adaptive = directives.adaptive if request.concurrency is None else None
        limit = request.concurrency or directives.concurrency or auto_concurrency(self.pipeline)
        if adaptive is not None:
            limit = adaptive.start
        settings = LoopSettings(
            limit=limit,
            stop_grace=request.stop_grace,
            kill_grace=request.kill_grace,
            timeouts=directives.timeouts,
            retry_policies={s.id: self.pipeline.retry_policy(s) for s in prepared.steps},
            memory_pressure=self.pipeline.memory_pressure,
            adaptive=adaptive,
            predicted=directives.priority,
        )
        run_id = request.run_id or new_run_id(self.clock.now())
        owner = LeaseOwner(uuid.uuid4().hex, self.host, os.getpid(), run_id)
        guards = acquire_run_guards(
            self.pipeline,
            self.store,
            owner,
            self.clock,
            self.control.lose_lease,
            kill_grace=request.kill_grace,
        )
        with guards:
            self.store.create_run(
                run_id=run_id,
                pipeline=self.pipeline.name,
                started_at=self.clock.now(),
                host=self.host,
                pid=os.getpid(),
                concurrency=limit,
                n_accounts=len(prepared.accounts),
                selection=prepared.selection,
                resumed_from=request.resume,
                owner_id=owner.owner_id,
            )
            try:
                self._record_start(run_id, settings)
                if on_created is not None:
                    on_created(run_id)
                if self.observer is not None:
                    totals = {s.id: 0 for s in prepared.steps}
                    for key in prepared.tasks:
                        totals[key.step] += 1
                    self.observer.on_event(RunStarted(run_id, totals, limit))
                outcome = self._loop(run_id, graph, settings, prepared.accounts).run()
            except BaseException:
                self._close_failed_run(run_id)
                raise
            self.store.record_pauses(
                run_id, self.pipeline.name, [p.as_dict() for p in outcome.pauses]
            )
            finished_at = self.clock.now()
            retry_disconnects(  # the run's last word: worth waiting for a restarting database
                lambda _retrying: self.store.finish_run(run_id, outcome.status, finished_at),
                budget_s=max(lease_ttl(self.pipeline), WRITE_RETRY_S),
                clock=self.clock,
                what=f"run {run_id}",
            )
            result = RunResult(
                run_id=run_id,
                status=outcome.status,
                counts=self.store.run_task_counts(run_id),
                concurrency=limit,
                takeover=guards.takeover,
                lease_lost=self.control.lease_lost,
                stopped_by_signal=self.control.stop_requests > 0,
                cancelled_not_started=outcome.cancelled_not_started,
                pauses=outcome.pauses,
            )
        if self.observer is not None:
            self.observer.on_event(RunFinished(result))
        return result

    def _record_start(self, run_id: str, settings: LoopSettings) -> None:
        """The run's first limit change: where its limit starts (and its bounds)."""
        bounds = settings.adaptive
        detail: dict[str, Any] = {"mode": "fixed"}
        if bounds is not None:
            detail = {"mode": "adaptive", "min": bounds.min, "ceiling": bounds.ceiling}
        self.store.record_limit_change(
            run_id,
            self.pipeline.name,
            at=self.clock.now(),
            from_limit=None,
            to_limit=settings.limit,
            reason=START_REASON,
            detail=detail,
        )

    def _loop(
        self, run_id: str, graph: TaskGraph, settings: LoopSettings, accounts: Sequence[str]
    ) -> RunLoop:
        recorder = RunRecorder(
            self.store,
            run_id=run_id,
            pipeline=self.pipeline.name,
            n_accounts=len(accounts),
            concurrency=settings.limit,
            host=self.host,
            clock=self.clock,
            retry_s=max(lease_ttl(self.pipeline), WRITE_RETRY_S),
        )
        return RunLoop(
            graph,
            settings,
            control=self.control,
            executor=self.executor,
            recorder=recorder,
            launches=TaskLaunches.for_run(self.pipeline, run_id),
            observer=self.observer,
            clock=self.clock,
            rng=self.rng,
            memory_probe=self.memory_probe,
            load_probe=self.load_probe,
        )
