"""One run of a pipeline at a time: an OS file lock, then the database lease.

* Process level: ``fcntl.flock`` on ``<state_dir>/locks/<pipeline>.lock``; the kernel
  releases it when the process dies, however it dies.
* Batch level: the lease row of the pipeline in the history (owner = host id, pid,
  token, run id) with a heartbeat thread at a third of the lease length. A lease whose
  holder expired, or whose process is gone on this host, is taken over: the dead run's
  process groups left on this host are stopped, its ``running`` rows become
  ``interrupted`` and the run ``abandoned``.

The OS lock guards one host only; across hosts the lease alone does, judged on the lease
clock (the database server's time on PostgreSQL: see :mod:`planner.history.leases`).
A holder on another host id is taken over only once its lease expired: its processes
cannot be seen from here, so its process groups are not stopped by the takeover (they
stop themselves: a run that cannot renew its lease for a lifetime stops its tasks).

While the database is unreachable the heartbeat keeps trying; the lease counts as lost
only when no heartbeat succeeded for a whole lifetime, measured on this host's monotonic
clock from when the last successful one was *sent* (so never after the expiry the
database stamped).

The lease length is ``$PLANNER_LEASE_TTL`` when set, else the pipeline's ``lease_ttl``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from planner.clock import Clock
from planner.errors import PlannerError, RunActiveError, UsageError
from planner.execution.process import LeftTask, kill_group, tasks_of_run
from planner.execution.stopping import block_stop_signals
from planner.history.records import AttemptOutcome, AttemptStart
from planner.status import AttemptStatus
from planner.units import parse_duration

if TYPE_CHECKING:
    from planner.config.models import Pipeline
    from planner.history import HistoryStore, LeaseHolder, LeaseOwner

__all__ = ["LeaseKeeper", "PipelineLock", "Takeover", "acquire_run_guards", "lease_ttl"]

log = logging.getLogger(__name__)


def lease_ttl(pipeline: Pipeline) -> float:
    """Seconds of the lease: ``$PLANNER_LEASE_TTL`` when set, else the pipeline's."""
    env = os.environ.get("PLANNER_LEASE_TTL")
    if env:
        try:
            ttl = parse_duration(env)
        except ValueError as exc:
            raise UsageError("PLANNER_LEASE_TTL", str(exc)) from None
        if ttl <= 0:
            raise UsageError("PLANNER_LEASE_TTL", f"must be a positive duration, got {env!r}")
        return ttl
    return float(pipeline.lease_ttl)


class PipelineLock:
    """An exclusive, non-blocking ``flock`` on ``<state_dir>/locks/<pipeline>.lock``."""

    def __init__(self, state_dir: Path, pipeline: str) -> None:
        self.path = state_dir / "locks" / f"{pipeline}.lock"
        self._fd: int | None = None

    def acquire(self, note: str) -> bool:
        """Take the lock (writing ``note`` into the file); False when someone holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, note.encode())
        self._fd = fd
        return True

    def holder_note(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class LeaseKeeper:
    """Keeps our lease alive: a heartbeat every ``ttl / 3`` in a daemon thread.

    ``on_lost`` is called (once, from the thread) when the lease is no longer ours.
    """

    def __init__(
        self,
        store: HistoryStore,
        pipeline: str,
        owner_id: str,
        ttl: float,
        *,
        clock: Clock,
        on_lost: Callable[[], None],
        since: float | None = None,
    ) -> None:
        self.store, self.pipeline, self.owner_id, self.ttl = store, pipeline, owner_id, ttl
        self.clock = clock
        self.on_lost = on_lost
        #: clock.monotonic() when the last successful acquire or heartbeat was sent
        self.last_ok = clock.monotonic() if since is None else since
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        block_stop_signals()
        while not self._stop.wait(self._pause()):
            sent = self.clock.monotonic()
            try:
                ok = self.store.heartbeat(self.pipeline, self.owner_id, self.ttl, self.clock.now())
            except PlannerError as exc:  # a busy or unreachable database: try again
                left = self.ttl - (self.clock.monotonic() - self.last_ok)
                log.warning("lease heartbeat failed (lease kept %.1fs more): %s", left, exc)
                ok = left > 0
            else:
                if ok:
                    self.last_ok = sent
            if not ok:
                self.on_lost()
                return

    def _pause(self) -> float:
        """A third of the lifetime; sooner while a failed heartbeat has less than that
        left (never busy-looping: at least 0.05 s)."""
        left = self.ttl - (self.clock.monotonic() - self.last_ok)
        return max(0.05, min(self.ttl / 3, left))

    def stop(self, release: bool = True, *, quiet: bool = False) -> None:
        """Stop the heartbeat and give the lease up; ``quiet``: a failure to release
        is not reported (the run is failing already, with its own error)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if release:
            try:
                self.store.release_lease(self.pipeline, self.owner_id)
            except PlannerError as exc:
                if not quiet:
                    log.warning("cannot release the lease: %s", exc)


@dataclass(frozen=True)
class Takeover:
    """What taking over a dead run did."""

    run_id: str | None
    reason: str  # "expired" or "owner_dead"
    interrupted: int
    groups_stopped: int


class RunGuards:
    """The file lock and the lease of one run; a context manager that releases both."""

    def __init__(self, lock: PipelineLock, keeper: LeaseKeeper, takeover: Takeover | None):
        self.lock = lock
        self.keeper = keeper
        self.takeover = takeover

    def release(self, *, quiet: bool = False) -> None:
        try:
            self.keeper.stop(release=True, quiet=quiet)
        finally:
            self.lock.release()

    def __enter__(self) -> RunGuards:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # When the run fails (say the disk is full), releasing the lease usually fails
        # the same way: the run's own error is the one line to show; the lease then
        # expires, or is taken over at once on this host since its owner is gone.
        self.release(quiet=exc is not None)


def _describe_holder(holder: LeaseHolder) -> str:
    run = f"run {holder.run_id}" if holder.run_id else "a run"
    since = holder.acquired_at.isoformat(timespec="seconds")
    return f"{run} is active (owner {holder.host} pid {holder.pid}, since {since})"


#: How long a process that finds the file lock busy waits for its holder to show its lease.
LOCK_SETTLE_S = 2.0


def _take_lock(lock: PipelineLock, note: str, store: HistoryStore, name: str, clock: Clock) -> None:
    """Take the file lock, or raise :class:`RunActiveError` naming the run that is active.

    The holder of a busy lock may be a process that has not taken the lease yet, and that
    may still lose it to a run elsewhere and let go of the lock: so wait (briefly) until
    either a lease is visible, which names the active run, or the lock comes free.
    """
    deadline = clock.monotonic() + LOCK_SETTLE_S
    while not lock.acquire(note):
        holder = store.get_lease(name)
        if holder is not None:
            raise RunActiveError(name, f"{_describe_holder(holder)}; nothing was started")
        if clock.monotonic() >= deadline:
            what = f"another planner process holds {lock.path} ({lock.holder_note()})"
            raise RunActiveError(name, f"{what}; nothing was started")
        clock.sleep(0.05)


def acquire_run_guards(
    pipeline: Pipeline,
    store: HistoryStore,
    owner: LeaseOwner,
    clock: Clock,
    on_lost: Callable[[], None],
    *,
    kill_grace: float = 5.0,
) -> RunGuards:
    """Take the file lock and the lease for ``owner``'s run, or raise :class:`RunActiveError`.

    A dead holder's run is taken over (see the module docstring) before returning.
    """
    name = pipeline.name
    ttl = lease_ttl(pipeline)
    lock = PipelineLock(pipeline.state_dir, name)
    note = f"run {owner.run_id} pid {owner.pid} since {clock.now().isoformat(timespec='seconds')}"
    _take_lock(lock, note, store, name, clock)
    try:
        sent = clock.monotonic()
        result = store.acquire_lease(name, owner, ttl, clock.now())
        if not result.acquired:
            raise RunActiveError(name, f"{_describe_holder(result.holder)}; nothing was started")
        takeover = None
        if result.previous is not None:
            reason = str(result.reason or "expired")
            takeover = _take_over(
                store, result.previous, owner, clock, grace=kill_grace, reason=reason
            )
    except BaseException:
        lock.release()
        raise
    keeper = LeaseKeeper(store, name, owner.owner_id, ttl, clock=clock, on_lost=on_lost, since=sent)
    keeper.start()
    return RunGuards(lock, keeper, takeover)


def _record_unrecorded(
    store: HistoryStore, previous: LeaseHolder, owner: LeaseOwner, task: LeftTask, now: datetime
) -> None:
    """A row for a task the dead run started but never recorded: nothing disappears."""
    started = datetime.fromtimestamp(task.started, UTC)
    attempt_id = store.start_attempt(
        AttemptStart(
            run_id=str(previous.run_id),
            pipeline=previous.pipeline,
            step=task.step,
            account=task.account,
            attempt=task.attempt,
            quantity=task.quantity,
            params={},
            n_accounts=None,
            concurrency=None,
            host=owner.host,
            started_at=started,
            pgid=task.pgid,
        )
    )
    store.finish_attempt(
        attempt_id,
        AttemptOutcome(
            status=AttemptStatus.INTERRUPTED,
            finished_at=now,
            duration_s=max(0.0, (now - started).total_seconds()),
            reason=f"run {previous.run_id} died before recording this task; "
            f"stopped when run {owner.run_id} took over",
        ),
    )


def _take_over(
    store: HistoryStore,
    previous: LeaseHolder,
    owner: LeaseOwner,
    clock: Clock,
    *,
    grace: float,
    reason: str,
) -> Takeover:
    """Abandon the dead holder's run; stop its process groups when it ran on this host."""
    run_id = previous.run_id
    if run_id is None:
        return Takeover(None, reason, 0, 0)
    before = store.run_task_counts(run_id).get(AttemptStatus.RUNNING, 0)
    now = clock.now()
    groups = store.abandon_run(run_id, now)
    stopped = 0
    if previous.host == owner.host:
        # Recorded groups, and any the dead run started but had not recorded yet.
        left = tasks_of_run(run_id)
        for pgid in sorted(set(groups) | set(left)):
            if kill_group(pgid, grace, clock.sleep, run_id=run_id):
                stopped += 1
        for task in left.values():
            if task.pgid not in groups:
                _record_unrecorded(store, previous, owner, task, clock.now())
                before += 1
    return Takeover(run_id, reason, before, stopped)
