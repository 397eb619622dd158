"""The scheduler loop of one run: tasks in dependency order, at most ``limit`` at once.

The main thread starts tasks (see :mod:`planner.execution.loop`), and one small thread per
running task waits for its process and reports the exit through a queue. Start
and end times are the process's own: the start is taken just before the spawn, the end
when the process exits, before its slot is given to the next task, so the recorded
intervals never show more tasks at once than the limit. Every attempt is written when it
starts and again when it ends.

Stopping (``request_stop``, called by the signal handlers, which only set flags): the
first call stops starting tasks, lets running ones finish for ``stop_grace`` seconds, then
kills them (TERM, ``kill_grace``, KILL); the second call kills at once. Tasks that never
started are recorded ``cancelled``.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from planner.clock import SYSTEM_CLOCK, Clock
from planner.config.models import Pipeline, Step
from planner.config.selection import select_steps
from planner.errors import UsageError
from planner.execution.guards import Takeover, acquire_run_guards
from planner.execution.loop import RunLoop
from planner.execution.stopping import handle_signals as _handle_signals
from planner.execution.tasks import TaskGraph, TaskKey

if TYPE_CHECKING:
    from planner.history import HistoryStore, RunRecord

__all__ = [
    "RunObserver",
    "RunRequest",
    "RunResult",
    "Runner",
    "auto_concurrency",
    "handle_signals",
    "new_run_id",
]

_DEFAULT_TASK_MEMORY = 512 * 1024 * 1024


@dataclass(frozen=True)
class RunRequest:
    """What to run and how; defaults run every step for every account."""

    steps: Sequence[str] | None = None
    with_deps: bool = False
    accounts: Sequence[str] | None = None
    resume: str | None = None
    concurrency: int | None = None
    #: Seconds per task for steps with ``timeout: auto`` (e.g. a plan's upper bounds);
    #: such a step's tasks missing here run without a timeout.
    auto_timeouts: Mapping[TaskKey, float] | None = None
    #: Start order among ready tasks: higher first (e.g. predicted seconds: longest first).
    priority: Mapping[TaskKey, float] | None = None
    stop_grace: float = 10.0
    kill_grace: float = 5.0
    sample_interval: float = 0.25


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its id, status, and final task counts by status."""

    run_id: str
    status: str
    counts: dict[str, int]
    concurrency: int
    takeover: Takeover | None = None
    #: The lease was taken by another run (this one then stopped as on a signal).
    lease_lost: bool = False

    @property
    def exit_code(self) -> int:
        """0 when every task succeeded, else 1."""
        return 0 if self.status == "succeeded" else 1


class RunObserver(Protocol):
    """Progress callbacks, called from the runner's thread."""

    def run_started(self, run_id: str, totals: Mapping[str, int], concurrency: int) -> None: ...

    def task_started(self, key: TaskKey, attempt: int) -> None: ...

    def task_finished(self, key: TaskKey, attempt: int, status: str, note: str) -> None: ...

    def run_finished(self, result: RunResult) -> None: ...


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


def handle_signals(runner: Runner) -> AbstractContextManager[None]:
    """SIGINT and SIGTERM call ``runner.request_stop`` while the block runs."""
    return _handle_signals(runner.request_stop)


class Runner:
    """Runs one pipeline once (or resumes a run), recording everything in ``store``."""

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
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.request = request or RunRequest()
        self.clock = clock
        self.rng = rng or random.Random()
        self.observer = observer
        self.host = host or socket.gethostname()
        self._stops = 0
        self._lease_lost = False

    # -- stopping (signal-safe: only flags) ---------------------------------------------

    def request_stop(self) -> None:
        """First call: stop starting tasks, then kill after a grace. Second: kill now."""
        self._stops += 1

    def _on_lease_lost(self) -> None:
        self._lease_lost = True

    # -- preparing ----------------------------------------------------------------------

    def _plan_tasks(self) -> tuple[list[Step], list[str], set[TaskKey], dict[str, Any]]:
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
        selection = {"steps": [s.id for s in steps], "accounts": accounts}
        return steps, accounts, done, selection

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
            done |= {k for k, status in last.items() if status == "succeeded"}
            parent = current.resumed_from
            current = self.store.get_run(parent) if parent else None
        return done

    # -- running ------------------------------------------------------------------------

    def _close_failed_run(self, run_id: str) -> None:
        """The loop itself failed: leave no ``running`` row behind (best effort)."""
        from planner.errors import PlannerError

        try:
            self.store.interrupt_running(run_id, self.clock.now())
            self.store.finish_run(run_id, status="failed", finished_at=self.clock.now())
        except PlannerError:
            pass

    def run(self) -> RunResult:
        """Run to the end (or until stopped); raises ``RunActiveError`` when another runs."""
        from planner.history import LeaseOwner

        steps, accounts, done, selection = self._plan_tasks()
        graph = TaskGraph(steps, accounts, done, self.request.priority)
        limit = self.request.concurrency or auto_concurrency(self.pipeline)
        run_id = new_run_id(self.clock.now())
        owner = LeaseOwner(uuid.uuid4().hex, self.host, os.getpid(), run_id)
        guards = acquire_run_guards(
            self.pipeline,
            self.store,
            owner,
            self.clock,
            self._on_lease_lost,
            kill_grace=self.request.kill_grace,
        )
        with guards:
            self.store.create_run(
                run_id=run_id,
                pipeline=self.pipeline.name,
                started_at=self.clock.now(),
                host=self.host,
                pid=os.getpid(),
                concurrency=limit,
                n_accounts=len(accounts),
                selection=selection,
                resumed_from=self.request.resume,
                owner_id=owner.owner_id,
            )
            loop = RunLoop(self, graph, run_id, limit, len(accounts))
            try:
                status = loop.run()
            except BaseException:
                self._close_failed_run(run_id)
                raise
            self.store.finish_run(run_id, status=status, finished_at=self.clock.now())
            result = RunResult(
                run_id=run_id,
                status=status,
                counts=self.store.run_task_counts(run_id),
                concurrency=limit,
                takeover=guards.takeover,
                lease_lost=self._lease_lost,
            )
        if self.observer is not None:
            self.observer.run_finished(result)
        return result
