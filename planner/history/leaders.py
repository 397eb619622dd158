"""Leaders (table ``leaders``): one row per pipeline naming the scheduler daemon that
schedules it.

A leader row is a lease on scheduling, not on running: it has the shape of ``leases`` and
is taken, kept and given up by the same conditional writes (:mod:`planner.history.leases`
with ``table=leaders``): free, ours, expired, or held by a process gone from this host
means taken; any other holder means refused. ``run_id`` stays empty.

A mixin of :class:`~planner.history.store.HistoryStore`, as :mod:`planner.history.alerts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Connection

from planner.history import leases as lease_ops
from planner.history.records import LeaseHolder, LeaseOwner, LeaseResult
from planner.history.schema import leaders

__all__ = ["LeaderLog"]


class LeaderLog:
    """The leader methods of the history store (a mixin: the store provides its read and
    write transactions, and ``_alive``, which tells whether a holder on this host runs)."""

    _alive: lease_ops.HolderAlive

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def acquire_leader(
        self, pipeline: str, owner: LeaseOwner, ttl_s: float, now: datetime
    ) -> LeaseResult:
        """Become the daemon that schedules ``pipeline`` if no one is, we are already, its
        leader expired, or its process is gone from this host (then ``previous`` and
        ``reason`` say whom we replaced and why); else ``holder`` names the leader."""
        with self._write() as conn:
            return lease_ops.acquire(
                conn, pipeline, owner, ttl_s=ttl_s, now=now, alive=self._alive, table=leaders
            )

    def heartbeat_leader(self, pipeline: str, owner_id: str, ttl_s: float, now: datetime) -> bool:
        """Stay the leader of ``pipeline`` until ``now + ttl_s``; False when we are not."""
        with self._write() as conn:
            return lease_ops.heartbeat(conn, pipeline, owner_id, ttl_s, now, table=leaders)

    def release_leader(self, pipeline: str, owner_id: str) -> bool:
        """Stop leading ``pipeline``; False when we were not its leader (any more)."""
        with self._write() as conn:
            return lease_ops.release(conn, pipeline, owner_id, table=leaders)

    def leaders(self, pipelines: Sequence[str] | None = None) -> dict[str, LeaseHolder]:
        """Pipeline -> its leader row, expired or not, for ``pipelines`` (None: every
        pipeline with one), in pipeline order."""
        with self._read() as conn:
            return lease_ops.holders(conn, pipelines, table=leaders)
