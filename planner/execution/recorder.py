"""The attempt rows of one run: built here, written in order by a :class:`RowWriter`.

Start rows of the tasks just spawned are kept until :meth:`RunRecorder.submit_starts`
(the loop calls it once the free slots are filled, so no slot waits for the database);
a finish row is always submitted after its start row. The machine's state (load average,
free memory) is read at most once a second and recorded with each start.

Each write is retried while the database is unreachable (a restart: the writer pauses,
the run goes on), for at most ``retry_s`` from its first failure (the runner gives
:data:`~planner.history.reconnect.WRITE_RETRY_S`, or the lease lifetime when longer: a
run whose lease is lost stops its tasks, then still records how they ended when the
database is back in time); an insert retried after a lost connection first looks for the
row its first try may have committed, so nothing is written twice
(:mod:`planner.history.reconnect`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from planner.execution.writer import RowRef, RowWriter
from planner.history.reconnect import retry_disconnects
from planner.history.records import AttemptOutcome, AttemptStart
from planner.status import AttemptStatus

if TYPE_CHECKING:
    from planner.clock import Clock
    from planner.config.models import Step
    from planner.execution.adaptive import LimitChange
    from planner.execution.tasks import TaskKey
    from planner.history import HistoryStore

__all__ = ["RunRecorder"]


class RunRecorder:
    """Writes the attempts of run ``run_id`` to ``store`` (one writer thread, in order)."""

    def __init__(
        self,
        store: HistoryStore,
        *,
        run_id: str,
        pipeline: str,
        n_accounts: int,
        concurrency: int,
        host: str,
        clock: Clock,
        retry_s: float = 0.0,
    ) -> None:
        self.store = store
        self.retry_s = retry_s
        self.run_id = run_id
        self.pipeline = pipeline
        self.n_accounts = n_accounts
        self.concurrency = concurrency
        self.host = host
        self.clock = clock
        self._cpu_count = os.cpu_count()
        self._machine_state: tuple[float, float | None, float | None] = (-1e9, None, None)
        self._unwritten: list[tuple[RowRef, AttemptStart]] = []
        self.writer = RowWriter()

    def _row(
        self,
        key: TaskKey,
        step: Step,
        attempt: int,
        started_at: datetime,
        *,
        pid: int | None = None,
        pgid: int | None = None,
        machine: bool = False,
    ) -> AttemptStart:
        load, free = self._machine() if machine else (None, None)
        return AttemptStart(
            run_id=self.run_id,
            pipeline=self.pipeline,
            step=step.id,
            account=key.account,
            attempt=attempt,
            quantity=float(step.quantity),
            params=dict(step.params),
            n_accounts=self.n_accounts,
            concurrency=self.concurrency,
            host=self.host,
            started_at=started_at,
            pid=pid,
            pgid=pgid,
            load_avg=load,
            free_mem_mb=free,
            cpu_count=self._cpu_count,
        )

    def _machine(self) -> tuple[float | None, float | None]:
        """Load average and available MiB, read at most once a second."""
        checked, load, free = self._machine_state
        now = self.clock.monotonic()
        if now - checked > 1.0:
            import psutil

            try:
                load = os.getloadavg()[0]
            except OSError:
                load = None
            free = psutil.virtual_memory().available / (1024 * 1024)
            self._machine_state = (now, load, free)
        return load, free

    def start(
        self,
        key: TaskKey,
        step: Step,
        attempt: int,
        started_at: datetime,
        *,
        pid: int | None = None,
        pgid: int | None = None,
    ) -> RowRef:
        """The start row of an attempt, kept until :meth:`submit_starts`."""
        ref = RowRef()
        row = self._row(key, step, attempt, started_at, pid=pid, pgid=pgid, machine=True)
        self._unwritten.append((ref, row))
        return ref

    def submit_starts(self) -> None:
        """Hand the kept start rows to the writer."""
        for ref, row in self._unwritten:
            self._submit(partial(_insert, self.store, ref, row))
        self._unwritten.clear()

    def _submit(self, write: Callable[[bool], object]) -> None:
        """Hand ``write(retrying)`` to the writer thread, retried on a lost connection."""
        self.writer.submit(
            partial(
                retry_disconnects,
                write,
                budget_s=self.retry_s,
                clock=self.clock,
                what=f"run {self.run_id}",
            )
        )

    def finish(self, ref: RowRef, outcome: AttemptOutcome) -> None:
        """The end of an attempt (its start row is submitted first if still kept)."""
        if self._unwritten:
            self.submit_starts()
        self._submit(partial(_update, self.store, ref, outcome))

    def skipped(self, key: TaskKey, step: Step, at: datetime, reason: str) -> None:
        """A task that will not run because a dependency failed."""
        row = self._row(key, step, 1, at)
        self._submit(partial(_skipped, self.store, row, reason))

    def cancelled(self, tasks: Sequence[tuple[TaskKey, Step, int]], at: datetime) -> None:
        """Attempts that never started because the run stopped: ``(key, step, attempt)``."""
        outcome = AttemptOutcome(
            status=AttemptStatus.CANCELLED,
            finished_at=at,
            duration_s=0.0,
            reason="the run was stopped before this task started",
        )
        for key, step, attempt in tasks:
            ref = RowRef()
            self._submit(partial(_insert, self.store, ref, self._row(key, step, attempt, at)))
            self._submit(partial(_update, self.store, ref, outcome))

    def limit_changed(self, at: datetime, change: LimitChange) -> None:
        """The run's limit changed at ``at``: stored in order with the attempts, and the
        attempts that start from now on record the new limit."""
        self.concurrency = change.new
        self._submit(partial(_limit_change, self.store, self.run_id, self.pipeline, at, change))

    def close(self) -> None:
        """Write what is pending and stop the writer thread; then :meth:`check`."""
        try:
            self.submit_starts()
        finally:
            self.writer.close()

    def check(self) -> None:
        """Raise the first write that failed (if it was not raised yet)."""
        self.writer.flush()


def _written(store: HistoryStore, row: AttemptStart) -> int | None:
    """The row a first try may have committed before its connection dropped."""
    return store.attempt_id_of(row.run_id, row.step, row.account, row.attempt)


def _insert(store: HistoryStore, ref: RowRef, row: AttemptStart, retrying: bool) -> None:
    found = _written(store, row) if retrying else None
    ref.attempt_id = found if found is not None else store.start_attempt(row)


def _update(store: HistoryStore, ref: RowRef, outcome: AttemptOutcome, _retrying: bool) -> None:
    store.finish_attempt(ref.attempt_id, outcome)  # the same values again: idempotent


def _skipped(store: HistoryStore, row: AttemptStart, reason: str, retrying: bool) -> None:
    if not (retrying and _written(store, row) is not None):
        store.record_skipped(row, reason)


def _limit_change(
    store: HistoryStore, run_id: str, pipeline: str, at: datetime, change: LimitChange, _: bool
) -> None:
    store.record_limit_change(
        run_id,
        pipeline,
        at=at,
        from_limit=change.old,
        to_limit=change.new,
        reason=change.reason,
        detail=change.detail,
    )
