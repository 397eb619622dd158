"""The scheduler loop of one run (used by :class:`planner.execution.runner.Runner`).

The main thread starts tasks; one small thread per running task waits for its process
and reports the exit through a queue. On each wake-up the loop handles every exit that
arrived, refills the free slots, and only then writes the finished rows, so a slot is
never kept idle by the database. A failed task is retried after its backoff (without
holding a slot), or fails for good and its dependents are recorded ``skipped``.
"""

from __future__ import annotations

import heapq
import os
import queue
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.errors import ExecutionError
from planner.execution.process import ExitInfo, Launch, TaskProcess, log_tail, render_command, spawn
from planner.execution.retry import decide_retry
from planner.execution.sampling import TreeSampler, TreeUsage
from planner.execution.stopping import block_stop_signals
from planner.execution.tasks import TaskGraph, TaskKey
from planner.execution.writer import RowRef, RowWriter

if TYPE_CHECKING:
    from planner.execution.runner import Runner
    from planner.history import HistoryStore

__all__ = ["RunLoop"]

_WAKE_S = 0.2


@dataclass
class _Active:
    key: TaskKey
    attempt: int
    row: RowRef
    process: TaskProcess
    started_mono: float
    log_path: Path


@dataclass
class _Finished:
    key: TaskKey
    info: ExitInfo
    usage: TreeUsage = field(default_factory=TreeUsage)


class RunLoop:
    """The state of one run's scheduler loop."""

    def __init__(
        self, runner: Runner, graph: TaskGraph, run_id: str, limit: int, n_accounts: int
    ) -> None:
        self.r = runner
        self.graph = graph
        self.run_id = run_id
        self.limit = limit
        self.n_accounts = n_accounts
        self.clock = runner.clock
        self.store = runner.store
        self.pipeline = runner.pipeline
        self.logs = runner.pipeline.state_dir / "logs" / run_id
        self.cwd = runner.pipeline.source.parent if runner.pipeline.source else None
        self.events: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        self.running: dict[TaskKey, _Active] = {}
        self.delayed: list[tuple[float, int, TaskKey]] = []
        self.sampler = TreeSampler(runner.request.sample_interval)
        self.base_env = dict(os.environ)
        self._wall0 = self.clock.now()
        self._mono0 = self.clock.monotonic()
        self._cpu_count = os.cpu_count()
        self._machine_state: tuple[float, float | None, float | None] = (-1e9, None, None)
        self._seq = 0
        self._unwritten: list[tuple[RowRef, Any]] = []
        self.writer = RowWriter()
        self._jobs: queue.SimpleQueue[tuple[TaskKey, TaskProcess, float | None] | None] = (
            queue.SimpleQueue()
        )

    def wall(self, mono: float) -> datetime:
        return self._wall0 + timedelta(seconds=mono - self._mono0)

    def run(self) -> str:
        r = self.r
        if r.observer is not None:
            totals = {s.id: 0 for s in self.graph.steps}
            for key in self.graph.to_run():
                totals[key.step] += 1
            r.observer.run_started(self.run_id, totals, self.limit)
        self.sampler.start()
        watchers = [
            threading.Thread(target=self._watcher, name=f"task-watcher-{i}", daemon=True)
            for i in range(self.limit)
        ]
        for watcher in watchers:
            watcher.start()
        stopped_at: float | None = None
        killed = forced = False
        try:
            while True:
                now = self.clock.monotonic()
                if (r._stops or r._lease_lost) and stopped_at is None:
                    stopped_at = now
                    self._cancel_waiting()
                if r._stops >= 2 and not forced:
                    forced = killed = True
                    for active in self.running.values():
                        active.process.request_kill(0.0, "stopped")
                if (
                    stopped_at is not None
                    and not killed
                    and now - stopped_at >= r.request.stop_grace
                ):
                    killed = True
                    for active in self.running.values():
                        active.process.request_kill(r.request.kill_grace, "stopped")
                if stopped_at is None:
                    self._start_due(now)
                idle = not self.running and (stopped_at is not None or not self.delayed)
                if idle and (stopped_at is not None or not self.graph.has_ready()):
                    break
                self._wait(now)
        finally:
            for active in self.running.values():
                active.process.request_kill(0.0, "runner failed")
            for _ in watchers:
                self._jobs.put(None)
            self.sampler.stop()
            self.writer.close()
        self.writer.flush()
        if stopped_at is not None:
            return "cancelled"
        counts = self.graph.counts_by_step()
        ok = all(set(c) <= {"succeeded"} for c in counts.values())
        return "succeeded" if ok else "failed"

    def _wait(self, now: float) -> None:
        """Wait for task exits (or a due retry), then handle every exit that arrived."""
        timeout = _WAKE_S
        if self.delayed:
            timeout = max(0.0, min(timeout, self.delayed[0][0] - now))
            if not self.running:
                self.clock.sleep(timeout)  # nothing to wait for but the retry
                return
        finished: list[_Finished] = []
        try:
            finished.append(self.events.get(timeout=timeout))
            while True:
                finished.append(self.events.get_nowait())
        except queue.Empty:
            pass
        writes = [self._finished(f) for f in finished]
        if writes and not (self.r._stops or self.r._lease_lost):
            self._start_due(self.clock.monotonic())  # refill slots before writing rows
        for ref, outcome in writes:
            self._finish_row(ref, outcome)

    def _start_due(self, now: float) -> None:
        while self.delayed and self.delayed[0][0] <= now and len(self.running) < self.limit:
            _, _, key = heapq.heappop(self.delayed)
            self._start(key)
        while len(self.running) < self.limit:
            ready = self.graph.pop_ready()
            if ready is None:
                break
            self._start(ready)
        self._write_starts()

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

    def _start_row(self, key: TaskKey, attempt: int, started: datetime, **extra: Any) -> Any:
        from planner.history import AttemptStart

        step = self.graph.step_of(key)
        return AttemptStart(
            run_id=self.run_id,
            pipeline=self.pipeline.name,
            step=step.id,
            account=key.account,
            attempt=attempt,
            quantity=float(step.quantity),
            params=dict(step.params),
            n_accounts=self.n_accounts,
            concurrency=self.limit,
            host=self.r.host,
            started_at=started,
            cpu_count=self._cpu_count,
            **extra,
        )

    def _start(self, key: TaskKey) -> None:
        step = self.graph.step_of(key)
        attempt = self.graph.start(key)
        values: dict[str, object] = {
            **step.params,
            "account": key.account or "",
            "quantity": step.quantity,
            "step": step.id,
            "run_id": self.run_id,
        }
        env = {
            **self.base_env,
            **step.env,
            "PLANNER_RUN_ID": self.run_id,
            "PLANNER_STEP": step.id,
            "PLANNER_ACCOUNT": key.account or "",
            "PLANNER_QUANTITY": str(step.quantity),
            "PLANNER_ATTEMPT": str(attempt),
        }
        name = _safe(step.id) + (f".{_safe(key.account)}" if key.account is not None else "")
        log_path = self.logs / f"{name}.{attempt}.log"
        launch = Launch(
            command=render_command(step.command, values, shell=step.shell),
            env=env,
            log_path=log_path,
            cwd=step.cwd or self.cwd,
            shell=step.shell,
        )
        load, free = self._machine()
        started_mono = self.clock.monotonic()
        try:
            process = spawn(launch, self.clock.monotonic)
        except ExecutionError as exc:
            started = self.wall(started_mono)
            row = self._start_row(key, attempt, started, load_avg=load, free_mem_mb=free)
            ref = self._start_row_write(row)
            self._notify_start(key, attempt)
            info = ExitInfo(exit_code=127, ended_mono=started_mono, maxrss_kb=0, cpu_s=0.0)
            _, outcome = self._finished(_Finished(key, info), ref, log_path, exc.what)
            self._finish_row(ref, outcome)
            return
        self.sampler.add(process.pid)
        timeout = step.timeout if isinstance(step.timeout, float) else None
        if step.timeout == "auto" and self.r.request.auto_timeouts:
            timeout = self.r.request.auto_timeouts.get(key)
        deadline = started_mono + timeout if timeout is not None else None
        self._jobs.put((key, process, deadline))
        row = self._start_row(
            key,
            attempt,
            self.wall(started_mono),
            pid=process.pid,
            pgid=process.pgid,
            load_avg=load,
            free_mem_mb=free,
        )
        self.running[key] = _Active(key, attempt, RowRef(), process, started_mono, log_path)
        self._unwritten.append((self.running[key].row, row))
        self._notify_start(key, attempt)

    def _write_starts(self) -> None:
        """Hand over the start rows of the tasks just spawned (after the slots were filled)."""
        for ref, row in self._unwritten:
            self.writer.submit(partial(_insert, self.store, ref, row))
        self._unwritten.clear()

    def _start_row_write(self, row: Any) -> RowRef:
        ref = RowRef()
        self.writer.submit(partial(_insert, self.store, ref, row))
        return ref

    def _finish_row(self, ref: RowRef, outcome: Any) -> None:
        self.writer.submit(lambda: self.store.finish_attempt(ref.attempt_id, outcome))

    def _watcher(self) -> None:
        """One of ``limit`` threads that wait for task processes, one at a time."""
        block_stop_signals()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._watch(*job)

    def _notify_start(self, key: TaskKey, attempt: int) -> None:
        if self.r.observer is not None:
            self.r.observer.task_started(key, attempt)

    def _watch(self, key: TaskKey, process: TaskProcess, deadline: float | None) -> None:
        box: list[TreeUsage] = []
        try:
            info = process.wait(
                deadline,
                self.r.request.kill_grace,
                before_reap=lambda: box.append(self.sampler.remove(process.pid)),
            )
        except BaseException:  # never leave the loop waiting for an exit that will not come
            info = ExitInfo(exit_code=-1, ended_mono=self.clock.monotonic(), maxrss_kb=0, cpu_s=0)
        self.events.put(_Finished(key, info, box[0] if box else TreeUsage()))

    def _finished(
        self,
        done: _Finished,
        ref: RowRef | None = None,
        log_path: Path | None = None,
        start_error: str | None = None,
    ) -> tuple[RowRef, Any]:
        """Decide what an exit means (status, retry, skips); returns the row to write."""
        from planner.history import AttemptOutcome

        key, info = done.key, done.info
        active = self.running.pop(key, None)
        if active is not None:
            ref, log_path, attempt = active.row, active.log_path, active.attempt
            started_mono = active.started_mono
        else:
            attempt = self.graph.attempts(key)
            started_mono = info.ended_mono
        assert ref is not None and log_path is not None
        stopping = bool(self.r._stops or self.r._lease_lost)
        if info.cancelled:
            status = "cancelled"
        elif info.timed_out:
            status = "timed_out"
        elif info.exit_code == 0 and start_error is None:
            status = "succeeded"
        else:
            status = "failed"
        tail = start_error or (log_tail(log_path) if status != "succeeded" else None)
        error_class: str | None = None
        reason: str | None = None
        skips: list[tuple[TaskKey, str]] = []
        if status == "succeeded":
            self.graph.succeed(key)
        elif status == "cancelled":
            self.graph.cancel(key)
            reason = "the run was stopped"
        else:
            step = self.graph.step_of(key)
            decision = decide_retry(
                self.pipeline.retry_policy(step),
                attempt=attempt,
                exit_code=info.exit_code,
                stderr_tail=tail or "",
                timed_out=info.timed_out,
                rng=self.r.rng,
            )
            error_class = decision.error_class
            if decision.retry and not stopping:
                reason = f"retry {attempt + 1} in {decision.delay_s:.2f}s"
                self.graph.retry_later(key)
                self._seq += 1
                due = self.clock.monotonic() + decision.delay_s
                heapq.heappush(self.delayed, (due, self._seq, key))
            else:
                skips = self.graph.fail(key)
        peak_mb, cpu_s = done.usage.final(info.maxrss_kb, info.cpu_s)
        outcome = AttemptOutcome(
            status=status,
            finished_at=self.wall(info.ended_mono),
            duration_s=max(0.0, info.ended_mono - started_mono),
            exit_code=info.exit_code,
            error_class=error_class,
            stderr_tail=tail,
            peak_rss_mb=peak_mb if start_error is None else None,
            cpu_s=cpu_s if start_error is None else None,
            reason=reason,
        )
        if self.r.observer is not None:
            self.r.observer.task_finished(key, attempt, status, reason or "")
        for skipped, why in skips:
            row = self._start_row(skipped, 1, self.wall(info.ended_mono))
            self.writer.submit(partial(self.store.record_skipped, row, why))
            if self.r.observer is not None:
                self.r.observer.task_finished(skipped, 1, "skipped", why)
        return ref, outcome

    def _cancel_waiting(self) -> None:
        """At a stop: tasks not started (or waiting for a retry) are recorded cancelled."""
        from planner.history import AttemptOutcome

        waiting = [(key, self.graph.attempts(key) + 1) for _, _, key in self.delayed]
        self.delayed.clear()
        for retried, _ in waiting:
            self.graph.cancel(retried)
        waiting += [(pending, 1) for pending in self.graph.cancel_pending()]
        now = self.clock.now()
        for key, attempt in waiting:
            ref = self._start_row_write(self._start_row(key, attempt, now))
            outcome = AttemptOutcome(
                status="cancelled",
                finished_at=now,
                duration_s=0.0,
                reason="the run was stopped before this task started",
            )
            self._finish_row(ref, outcome)
            if self.r.observer is not None:
                self.r.observer.task_finished(key, attempt, "cancelled", "not started")


def _insert(store: HistoryStore, ref: RowRef, row: Any) -> None:
    ref.attempt_id = store.start_attempt(row)


def _safe(name: str) -> str:
    """A name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", name) or "_"
