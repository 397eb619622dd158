"""Leases and leaders: the store's methods over :mod:`planner.history.leases`.

Run leases (table ``leases``): one row per pipeline naming the run that may execute it.
Leaders (table ``leaders``): one row per pipeline naming the scheduler daemon that
schedules it.

A leader row is a lease on scheduling, not on running: it has the shape of ``leases`` and
is taken, kept and given up by the same conditional writes (:mod:`planner.history.leases`
with ``table=leaders``): free, ours, expired, or held by a process gone from this host
means taken; any other holder means refused. ``run_id`` stays empty.

Both are judged on the lease clock (:func:`~planner.history.leases.lease_now`): the
database server's time on PostgreSQL, so hosts with skewed clocks agree; the store's
clock on SQLite (one host). The ``now`` these methods take is the caller's time, used only
where the lease clock is local; :meth:`LeaseLog.lease_time` tells what the lease clock
reads, for anyone who compares an ``expires_at`` with "now" (``planner status``, the
metrics, the daemon's deferral).

Mixins of :class:`~planner.history.store.HistoryStore`, as :mod:`planner.history.alerts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Connection

from planner.clock import Clock
from planner.history import leases as lease_ops
from planner.history.records import LeaseHolder, LeaseOwner, LeaseResult
from planner.history.schema import leaders

__all__ = ["LeaderLog", "LeaseLog"]


class LeaseLog:
    """The run-lease methods of the history store (a mixin: the store provides its
    transactions, its clock, and ``_alive``, which tells whether a holder on this host
    runs)."""

    _alive: lease_ops.HolderAlive
    _clock: Clock

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _local(self, now: datetime | None) -> datetime:
        return now if now is not None else self._clock.now()

    def lease_time(self, now: datetime | None = None) -> datetime:
        """What the lease clock reads now: the database server's time on PostgreSQL,
        else ``now`` (default: the store's clock). Compare ``expires_at`` with this."""
        with self._read() as conn:
            return lease_ops.lease_now(conn, self._local(now))

    def acquire_lease(
        self, pipeline: str, owner: LeaseOwner, ttl_s: float, now: datetime | None = None
    ) -> LeaseResult:
        """Take the lease of ``pipeline`` if free, ours, expired, or its holder died here."""
        with self._write() as conn:
            return lease_ops.acquire(
                conn, pipeline, owner, ttl_s=ttl_s, now=self._local(now), alive=self._alive
            )

    def heartbeat(
        self, pipeline: str, owner_id: str, ttl_s: float, now: datetime | None = None
    ) -> bool:
        """Extend our lease to the lease clock's now + ``ttl_s``; False when we lost it."""
        with self._write() as conn:
            return lease_ops.heartbeat(conn, pipeline, owner_id, ttl_s, self._local(now))

    def release_lease(self, pipeline: str, owner_id: str) -> None:
        """Give our lease up (nothing happens when it is not ours)."""
        with self._write() as conn:
            lease_ops.release(conn, pipeline, owner_id)

    def get_lease(self, pipeline: str) -> LeaseHolder | None:
        """The lease row of ``pipeline`` (possibly expired), if any."""
        with self._read() as conn:
            return lease_ops.current(conn, pipeline)


class LeaderLog:
    """The leader methods of the history store (a mixin: the store provides its read and
    write transactions, and ``_alive``, which tells whether a holder on this host runs)."""

    _alive: lease_ops.HolderAlive
    _clock: Clock

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def acquire_leader(
        self, pipeline: str, owner: LeaseOwner, ttl_s: float, now: datetime | None = None
    ) -> LeaseResult:
        """Become the daemon that schedules ``pipeline`` if no one is, we are already, its
        leader expired, or its process is gone from this host (then ``previous`` and
        ``reason`` say whom we replaced and why); else ``holder`` names the leader."""
        local = now if now is not None else self._clock.now()
        with self._write() as conn:
            return lease_ops.acquire(
                conn, pipeline, owner, ttl_s=ttl_s, now=local, alive=self._alive, table=leaders
            )

    def heartbeat_leader(
        self, pipeline: str, owner_id: str, ttl_s: float, now: datetime | None = None
    ) -> bool:
        """Stay the leader of ``pipeline`` until the lease clock's now + ``ttl_s``; False
        when we are not."""
        local = now if now is not None else self._clock.now()
        with self._write() as conn:
            return lease_ops.heartbeat(conn, pipeline, owner_id, ttl_s, local, table=leaders)

    def release_leader(self, pipeline: str, owner_id: str) -> bool:
        """Stop leading ``pipeline``; False when we were not its leader (any more)."""
        with self._write() as conn:
            return lease_ops.release(conn, pipeline, owner_id, table=leaders)

    def leaders(self, pipelines: Sequence[str] | None = None) -> dict[str, LeaseHolder]:
        """Pipeline -> its leader row, expired or not, for ``pipelines`` (None: every
        pipeline with one), in pipeline order."""
        with self._read() as conn:
            return lease_ops.holders(conn, pipelines, table=leaders)
