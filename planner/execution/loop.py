"""The scheduler loop of one run: tasks in dependency order, at most ``limit`` at once.

The main thread starts tasks through an :class:`~planner.execution.executor.Executor`;
``limit`` small threads wait for them (:meth:`Executor.wait`) and report each exit
through a queue. On each wake-up the loop handles every exit that arrived, refills the
free slots, and only then hands the finished rows to the recorder, so a slot is never
kept idle by the database. Start and end times are the task's own: the start is taken
just before the executor starts it, the end when it exits, before its slot is given to
the next task, so the recorded intervals never show more tasks at once than the limit.
A failed task is retried after its backoff (without holding a slot), or fails for good
and its dependents are recorded ``skipped``.

Stopping (see :class:`~planner.execution.control.RunControl`): the first stop request
(or a lost lease) stops starting tasks, records the tasks that had not started
``cancelled``, lets running ones finish for ``stop_grace`` seconds, then kills them
(TERM, ``kill_grace``, KILL); a second request kills at once.

Memory: on every wake-up the tasks of steps with a ``memory_limit`` are checked against
the executor's figure of their tree (:mod:`planner.execution.memory`); one over its limit
is killed like a timeout and fails with error class ``memory``. With the pipeline's
``memory_pressure``, a :class:`~planner.execution.pressure.PressureGate` decides how many
tasks may start (none while the system's memory in use is above the threshold).
"""

from __future__ import annotations

import heapq
import queue
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from planner.clock import SYSTEM_CLOCK, Clock
from planner.errors import ExecutionError
from planner.execution.adaptive import LimitChange
from planner.execution.control import LoopSettings, RunControl, StopReason
from planner.execution.events import (
    LimitChanged,
    RunEvent,
    RunObserver,
    RunStopping,
    TaskFinished,
    TaskRetrying,
    TasksCancelled,
    TaskSkipped,
    TaskStarted,
)
from planner.execution.executor import Executor, TaskExit, TaskHandle
from planner.execution.launches import TaskLaunches
from planner.execution.limiter import RunLimit
from planner.execution.load import LoadProbe
from planner.execution.memory import MemoryWatch
from planner.execution.pressure import MemoryProbe, PressureGate, PressurePause, SystemMemoryProbe
from planner.execution.process import ExitInfo, log_tail
from planner.execution.recorder import RunRecorder
from planner.execution.retry import decide_retry
from planner.execution.stopping import block_stop_signals
from planner.execution.tasks import TaskGraph, TaskKey, TaskState
from planner.execution.writer import RowRef
from planner.history.records import AttemptOutcome
from planner.status import AttemptStatus, RunStatus

__all__ = ["LoopOutcome", "RunLoop"]

_WAKE_S = 0.2


@dataclass
class _Active:
    attempt: int
    row: RowRef
    handle: TaskHandle
    started_mono: float
    log_path: Path
    busy_mark: float = 0.0


@dataclass(frozen=True)
class LoopOutcome:
    """How the loop ended: the run's status, how many tasks were cancelled before they
    started, and the memory-pressure pauses."""

    status: RunStatus
    cancelled_not_started: int
    pauses: tuple[PressurePause, ...] = ()


class RunLoop:
    """The state of one run's scheduler loop (run it once with :meth:`run`).

    ``memory_probe``: where the system's memory in use is read when the settings have
    ``memory_pressure`` (default: this machine's); ``load_probe``: where an adaptive
    limit reads the machine's load (default: this machine's)."""

    def __init__(
        self,
        graph: TaskGraph,
        settings: LoopSettings,
        *,
        control: RunControl,
        executor: Executor,
        recorder: RunRecorder,
        launches: TaskLaunches,
        observer: RunObserver | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        memory_probe: MemoryProbe | None = None,
        load_probe: LoadProbe | None = None,
    ) -> None:
        self.graph = graph
        self.settings = settings
        self.control = control
        self.executor = executor
        self.recorder = recorder
        self.launches = launches
        self.observer = observer
        self.clock = clock
        self.rng = rng or random.Random()
        self.exits: queue.SimpleQueue[tuple[TaskKey, TaskExit]] = queue.SimpleQueue()
        self.running: dict[TaskKey, _Active] = {}
        self.delayed: list[tuple[float, int, TaskKey]] = []
        self._wall0 = clock.now()
        self._mono0 = clock.monotonic()
        self._seq = 0
        self._cancelled = 0
        self._jobs: queue.SimpleQueue[tuple[TaskKey, TaskHandle, float | None] | None] = (
            queue.SimpleQueue()
        )
        self.memory = MemoryWatch(executor)
        self.limit = RunLimit(
            settings, now=self._mono0, on_change=self._limit_changed, probe=load_probe
        )
        self._watchers: list[threading.Thread] = []
        self.gate: PressureGate | None = None
        pressure = settings.memory_pressure
        if pressure is not None:
            command = pressure.cleanup_command
            self.gate = PressureGate(
                pressure,
                memory_probe or SystemMemoryProbe(),
                clock=clock,
                wall=self.wall,
                emit=self._emit,
                cleanup_launch=(lambda n: launches.cleanup(command, n)) if command else None,
                kill_grace=settings.kill_grace,
            )

    def wall(self, mono: float) -> datetime:
        """The UTC time of a monotonic reading of the run's clock."""
        return self._wall0 + timedelta(seconds=mono - self._mono0)

    def _emit(self, event: RunEvent) -> None:
        if self.observer is not None:
            self.observer.on_event(event)

    def _limit_changed(self, change: LimitChange) -> None:
        self.recorder.limit_changed(self.wall(change.at_mono), change)
        self._emit(LimitChanged(change.old, change.new, change.reason))
        self._add_watchers()

    def _add_watchers(self) -> None:
        """As many waiting threads as the limit (each waits for one task at a time)."""
        while len(self._watchers) < self.limit.value:
            name = f"task-watcher-{len(self._watchers)}"
            self._watchers.append(threading.Thread(target=self._watcher, name=name, daemon=True))
            self._watchers[-1].start()

    def run(self) -> LoopOutcome:
        """Run the graph to its end, or until the control says stop."""
        control, settings = self.control, self.settings
        watchers = self._watchers
        stopped_at: float | None = None
        killed = forced = False
        gate = self.gate
        pauses: tuple[PressurePause, ...] = ()
        try:
            self.executor.open(self.clock)
            self._add_watchers()
            while True:
                now = self.clock.monotonic()
                reason = control.reason
                if stopped_at is None and reason is not None:
                    stopped_at = now
                    if gate is not None:
                        gate.stop(now)
                    if reason is not StopReason.FORCED:  # (else said just below)
                        grace, running = settings.stop_grace, len(self.running)
                        self._emit(RunStopping(reason, grace, running))
                    self._cancel_waiting()
                if control.forced and not forced:
                    forced = killed = True
                    self._emit(RunStopping(StopReason.FORCED, 0.0, len(self.running)))
                    self._kill_running(0.0)
                grace_over = stopped_at is not None and now - stopped_at >= settings.stop_grace
                if grace_over and not killed:
                    killed = True
                    self._kill_running(settings.kill_grace)
                if stopped_at is None:
                    running = len(self.running)
                    self.limit.tick(now, running=running, waiting=self._waiting(now))
                    self._start_due(now)
                self.memory.check(settings.kill_grace)
                idle = not self.running and (stopped_at is not None or not self.delayed)
                if idle and (stopped_at is not None or not self.graph.has_ready()):
                    break
                self._wait(now)
        finally:
            self._kill_running(0.0)  # only left when the loop itself failed
            for _ in watchers:
                self._jobs.put(None)
            try:
                if gate is not None:
                    pauses = gate.close(self.clock.monotonic())
                self.executor.close()
            finally:
                self.recorder.close()
        self.recorder.check()
        if stopped_at is not None:
            status = RunStatus.CANCELLED
        elif all(set(c) <= {TaskState.SUCCEEDED} for c in self.graph.counts_by_step().values()):
            status = RunStatus.SUCCEEDED
        else:
            status = RunStatus.FAILED
        return LoopOutcome(status, self._cancelled, pauses)

    def _kill_running(self, grace: float) -> None:
        for active in self.running.values():
            self.executor.request_kill(active.handle, grace)

    def _wait(self, now: float) -> None:
        """Wait for task exits (or a due retry, or the pressure gate), then handle every
        exit that arrived."""
        timeout = _WAKE_S
        wake = self.delayed[0][0] if self.delayed else None
        gate = self.gate
        if gate is not None and gate.paused:  # a due retry waits for the gate
            wake = gate.next_wake if wake is None or wake <= now else min(wake, gate.next_wake)
        if wake is not None:
            timeout = max(0.0, min(timeout, wake - now))
            if not self.running:
                self.clock.sleep(timeout)  # nothing to wait for but the retry or the gate
                return
        exited: list[tuple[TaskKey, TaskExit]] = []
        try:
            exited.append(self.exits.get(timeout=timeout))
            while True:
                exited.append(self.exits.get_nowait())
        except queue.Empty:
            pass
        writes = [self._finished(key, done) for key, done in exited]
        if writes and not self.control.stopping:
            self._start_due(self.clock.monotonic())  # refill slots before writing rows
        for ref, outcome in writes:
            self.recorder.finish(ref, outcome)

    def _start_due(self, now: float) -> None:
        limit = self.limit.value
        budget = limit  # starts allowed by the pressure gate (more than can happen)
        if self.gate is not None:
            running = len(self.running)
            due = bool(self.delayed) and self.delayed[0][0] <= now
            wanted = limit - running if due or self.graph.has_ready() else 0
            waiting = lambda: self._waiting(now)  # noqa: E731 (read only when a pause begins)
            budget = self.gate.admit(now, wanted, running=running, waiting=waiting)
        while self.delayed and self.delayed[0][0] <= now and len(self.running) < limit:
            if budget <= 0:
                break
            budget -= 1
            _, _, key = heapq.heappop(self.delayed)
            self._start(key)
        while len(self.running) < limit and budget > 0:
            ready = self.graph.pop_ready()
            if ready is None:
                break
            budget -= 1
            self._start(ready)
        self.recorder.submit_starts()

    def _waiting(self, now: float) -> int:
        """Tasks that could start now (ready, or a retry that is due)."""
        return self.graph.ready_count() + sum(1 for due, *_ in self.delayed if due <= now)

    def _start(self, key: TaskKey) -> None:
        step = self.graph.step_of(key)
        attempt = self.graph.start(key)
        launch = self.launches.launch(key, step, attempt)
        started_mono = self.clock.monotonic()
        try:
            handle = self.executor.start(launch)
        except ExecutionError as exc:
            ref = self.recorder.start(key, step, attempt, self.wall(started_mono))
            self._emit(TaskStarted(key, attempt))
            info = ExitInfo(exit_code=127, ended_mono=started_mono, maxrss_kb=0, cpu_s=0.0)
            done = TaskExit(info, peak_rss_mb=None, cpu_s=None)
            _, outcome = self._finished(key, done, (ref, launch.log_path), exc.what)
            self.recorder.finish(ref, outcome)
            return
        timeout = step.timeout if isinstance(step.timeout, float) else None
        if step.timeout == "auto":
            timeout = self.settings.timeouts.get(key)
        deadline = started_mono + timeout if timeout is not None else None
        if step.memory_limit is not None:
            self.memory.watch(key, handle, step.memory_limit)
        self._jobs.put((key, handle, deadline))
        ref = self.recorder.start(
            key, step, attempt, self.wall(started_mono), pid=handle.pid, pgid=handle.pgid
        )
        self.running[key] = _Active(attempt, ref, handle, started_mono, launch.log_path)
        self.running[key].busy_mark = self.limit.busy(started_mono, len(self.running))
        self._emit(TaskStarted(key, attempt))

    def _watcher(self) -> None:
        """One of ``limit`` threads that wait for tasks, one at a time."""
        block_stop_signals()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._watch(*job)

    def _watch(self, key: TaskKey, handle: TaskHandle, deadline: float | None) -> None:
        try:
            done = self.executor.wait(handle, deadline, self.settings.kill_grace)
        except BaseException:  # never leave the loop waiting for an exit that will not come
            info = ExitInfo(exit_code=-1, ended_mono=self.clock.monotonic(), maxrss_kb=0, cpu_s=0)
            done = TaskExit(info, peak_rss_mb=None, cpu_s=None)
        self.exits.put((key, done))

    def _finished(
        self,
        key: TaskKey,
        done: TaskExit,
        unstarted: tuple[RowRef, Path] | None = None,
        start_error: str | None = None,
    ) -> tuple[RowRef, AttemptOutcome]:
        """Decide what an exit means (status, retry, skips); returns the row to write.

        ``unstarted``: the row and log of an attempt the executor could not start."""
        info = done.info
        active = self.running.pop(key, None)
        if active is not None:
            ref, log_path, attempt = active.row, active.log_path, active.attempt
            started_mono = active.started_mono
        else:
            assert unstarted is not None
            (ref, log_path), attempt = unstarted, self.graph.attempts(key)
            started_mono = info.ended_mono
        exceeded = self.memory.ended(key)
        if exceeded is not None and not info.cancelled:
            exceeded = None  # it ended on its own before the kill: as it ended
        if exceeded is not None:
            status = AttemptStatus.FAILED  # stopped over its memory limit
        elif info.cancelled:
            status = AttemptStatus.CANCELLED
        elif info.lost:  # the executor lost it (a Dask worker died): retried as class `lost`
            status = AttemptStatus.INTERRUPTED
        elif info.timed_out:
            status = AttemptStatus.TIMED_OUT
        elif info.exit_code == 0 and start_error is None:
            status = AttemptStatus.SUCCEEDED
        else:
            status = AttemptStatus.FAILED
        duration = max(0.0, info.ended_mono - started_mono)
        if active is not None:
            self.limit.finished(
                key,
                started=started_mono,
                mark=active.busy_mark,
                ended=info.ended_mono,
                ran_whole=status == AttemptStatus.SUCCEEDED,
                peak_rss_mb=done.peak_rss_mb,
                cpu_s=done.cpu_s,
            )
            self.limit.busy(info.ended_mono, len(self.running))
        tail = start_error or (log_tail(log_path) if status != AttemptStatus.SUCCEEDED else None)
        error_class: str | None = None
        reason: str | None = None
        limit = exceeded.limit_bytes if exceeded is not None else None
        skips: list[tuple[TaskKey, str]] = []
        retrying: TaskRetrying | None = None
        if status == AttemptStatus.SUCCEEDED:
            self.graph.succeed(key)
        elif status == AttemptStatus.CANCELLED:
            self.graph.cancel(key)
            reason = "the run was stopped"
        else:
            decision = decide_retry(
                self.settings.retry_policies.get(key.step),
                attempt=attempt,
                exit_code=info.exit_code,
                stderr_tail=tail or "",
                timed_out=info.timed_out,
                rng=self.rng,
                over_memory=exceeded is not None,
                lost=info.lost,
            )
            error_class = decision.error_class
            if exceeded is not None:
                reason = exceeded.reason(done.peak_rss_mb)
            if decision.retry and not self.control.stopping:
                retry = f"retry {attempt + 1} in {decision.delay_s:.2f}s"
                reason = f"{reason}; {retry}" if reason else retry
                retrying = TaskRetrying(key, attempt, status, duration, info.exit_code,
                                        error_class, decision.delay_s, limit)  # fmt: skip
                self.graph.retry_later(key)
                self._seq += 1
                due = self.clock.monotonic() + decision.delay_s
                heapq.heappush(self.delayed, (due, self._seq, key))
            else:
                skips = self.graph.fail(key)
        ended = self.wall(info.ended_mono)
        outcome = AttemptOutcome(
            status=status,
            finished_at=ended,
            duration_s=duration,
            exit_code=info.exit_code,
            error_class=error_class,
            stderr_tail=tail,
            peak_rss_mb=done.peak_rss_mb if start_error is None else None,
            cpu_s=done.cpu_s if start_error is None else None,
            reason=reason,
        )
        if retrying is not None:
            self._emit(retrying)
        else:
            self._emit(TaskFinished(key, attempt, status, duration, info.exit_code,
                                    error_class, limit))  # fmt: skip
        for skipped, why in skips:
            self.recorder.skipped(skipped, self.graph.step_of(skipped), ended, why)
            self._emit(TaskSkipped(skipped, why))
        return ref, outcome

    def _cancel_waiting(self) -> None:
        """At a stop: tasks not started (or waiting for a retry) are recorded cancelled."""
        graph = self.graph
        waiting = [(key, graph.attempts(key) + 1) for _, _, key in self.delayed]
        self.delayed.clear()
        for retried, _ in waiting:
            graph.cancel(retried)
        waiting += [(pending, 1) for pending in graph.cancel_pending()]
        if not waiting:
            return
        self.recorder.cancelled(
            [(key, graph.step_of(key), attempt) for key, attempt in waiting], self.clock.now()
        )
        self._cancelled = len(waiting)
        self._emit(TasksCancelled(tuple(key for key, _ in waiting)))
