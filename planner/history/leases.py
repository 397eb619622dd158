"""The lease: one row per pipeline naming the run that may execute it.

Every function here runs inside a write transaction the store opened (``BEGIN IMMEDIATE``
on SQLite, so read-then-write cannot race; on PostgreSQL the row is inserted with
``ON CONFLICT DO NOTHING`` and then locked with ``SELECT ... FOR UPDATE``), and every
takeover is a conditional ``UPDATE ... WHERE owner_id = <the holder we saw>``.

The same functions keep the ``leaders`` table (the daemon that schedules a pipeline),
which has the shape of ``leases``: pass ``table=leaders``.

**Whose clock.** A lease's times (``acquired_at``, ``heartbeat_at``, ``expires_at``) and
the "now" it is judged against come from one clock, the *lease clock* (:func:`lease_now`):

* on PostgreSQL, the database server's ``clock_timestamp()``, read inside the
  transaction (after the row lock is held). Every host that shares the database compares
  against that one clock, so a host whose own clock is minutes off can neither take a
  live lease nor keep one past its expiry. The caller's ``now`` is not used there;
* on SQLite, the caller's ``now`` (the store's clock: the clock seam). A SQLite history
  is a file on one host's filesystem, so every process that uses it reads the same
  system clock; SQLite over NFS or another shared filesystem is not supported (its
  locking is not reliable there either): several hosts share a PostgreSQL history.

Tests move a :class:`~planner.clock.FakeClock` to expire a lease on SQLite; on PostgreSQL
nothing can move the server's clock, so the contract tests use short lifetimes and wait
them out for real (tests/history/test_leases.py), which is what proves expiry on the
server's time.

Expiry is judged by the lease clock only. A holder that cannot reach the database judges
its own lease on its local monotonic clock instead (the run's heartbeat thread and the
daemon's leadership): it counts itself gone a lifetime after it *sent* its last
successful heartbeat, which is never later than the expiry the server stamped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Table, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from planner.clock import ensure_utc
from planner.history.records import LeaseHolder, LeaseOwner, LeaseResult, TakeoverReason
from planner.history.schema import leases

__all__ = [
    "HolderAlive",
    "acquire",
    "current",
    "heartbeat",
    "holder_process_alive",
    "holders",
    "lease_now",
    "release",
    "server_clock",
]

#: Tells whether a lease holder on this host still runs (default: :func:`holder_process_alive`).
HolderAlive = Callable[[LeaseHolder], bool]


def holder_process_alive(holder: LeaseHolder) -> bool:
    """Whether the holder's process (on this host) still exists; a zombie counts as gone.

    A pid reused by another process counts as alive: the lease then waits for its expiry,
    which is the safe side (the lease's times may come from a fake clock, so comparing
    them with the process's start time could take a live lease).
    """
    import psutil

    try:
        return bool(psutil.Process(holder.pid).status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def server_clock(conn: Connection) -> bool:
    """Whether the database has a clock every host shares (PostgreSQL): then it is the
    lease clock; else (SQLite: one host's file) the caller's clock is."""
    return conn.dialect.name == "postgresql"


def lease_now(conn: Connection, local: datetime) -> datetime:
    """The lease clock's time (see the module docstring): the database server's
    ``clock_timestamp()`` where there is one, else ``local`` (the caller's clock)."""
    if server_clock(conn):
        stamp = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        return ensure_utc(stamp)
    return ensure_utc(local)


def acquire(
    conn: Connection,
    pipeline: str,
    owner: LeaseOwner,
    *,
    ttl_s: float,
    now: datetime,
    alive: HolderAlive,
    table: Table = leases,
) -> LeaseResult:
    """Take the lease of ``pipeline`` if it is free, ours, expired, or its owner is gone
    (in ``table``: ``leases``, or ``leaders``). ``now``: the caller's time, used only
    where the lease clock is local (:func:`lease_now`)."""
    local = now
    now = lease_now(conn, local)
    mine = LeaseHolder(
        pipeline=pipeline,
        owner_id=owner.owner_id,
        host=owner.host,
        pid=owner.pid,
        run_id=owner.run_id,
        acquired_at=now,
        heartbeat_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    for _ in range(10):
        if _insert_if_absent(conn, mine, table):
            return LeaseResult(acquired=True, holder=mine)
        row = conn.execute(
            select(table).where(table.c.pipeline == pipeline).with_for_update()
        ).one_or_none()
        if row is None:
            continue  # released between our insert and our read: try again
        if server_clock(conn):  # judged when the row lock is ours (we may have waited)
            now = lease_now(conn, local)
            mine = _stamped(mine, now, ttl_s)
        held = _holder(row)
        if held.owner_id == owner.owner_id:
            refreshed = LeaseHolder(**{**vars(mine), "acquired_at": held.acquired_at})
            _replace(conn, held.owner_id, refreshed, table)
            return LeaseResult(acquired=True, holder=refreshed)
        reason: TakeoverReason | None = None
        if held.expires_at <= now:
            reason = TakeoverReason.EXPIRED
        elif held.host == owner.host and not alive(held):
            reason = TakeoverReason.OWNER_DEAD
        if reason is None:
            return LeaseResult(acquired=False, holder=held)
        if _replace(conn, held.owner_id, mine, table):
            return LeaseResult(acquired=True, holder=mine, previous=held, reason=reason)
    row = conn.execute(select(table).where(table.c.pipeline == pipeline)).one()
    return LeaseResult(acquired=False, holder=_holder(row))


def heartbeat(
    conn: Connection,
    pipeline: str,
    owner_id: str,
    ttl_s: float,
    now: datetime,
    *,
    table: Table = leases,
) -> bool:
    """Extend our lease to the lease clock's now + ``ttl_s``; False when it is no longer
    ours. ``now``: the caller's time, used only where the lease clock is local."""
    now = lease_now(conn, now)
    result = conn.execute(
        update(table)
        .where(table.c.pipeline == pipeline, table.c.owner_id == owner_id)
        .values(heartbeat_at=now, expires_at=now + timedelta(seconds=ttl_s))
    )
    return result.rowcount == 1


def release(conn: Connection, pipeline: str, owner_id: str, *, table: Table = leases) -> bool:
    """Give our lease up; False when it was not ours (any more)."""
    result = conn.execute(
        delete(table).where(table.c.pipeline == pipeline, table.c.owner_id == owner_id)
    )
    return result.rowcount == 1


def current(conn: Connection, pipeline: str, *, table: Table = leases) -> LeaseHolder | None:
    """The lease row of ``pipeline``, expired or not, if there is one."""
    row = conn.execute(select(table).where(table.c.pipeline == pipeline)).one_or_none()
    return _holder(row) if row is not None else None


def holders(
    conn: Connection, pipelines: Sequence[str] | None = None, *, table: Table = leases
) -> dict[str, LeaseHolder]:
    """Pipeline -> its row (expired or not) of every pipeline in ``pipelines`` (None: all)
    that has one, in pipeline order."""
    query = select(table).order_by(table.c.pipeline)
    if pipelines is not None:
        wanted = list(dict.fromkeys(pipelines))
        if not wanted:
            return {}
        query = query.where(table.c.pipeline.in_(wanted))
    return {row.pipeline: _holder(row) for row in conn.execute(query)}


def _stamped(holder: LeaseHolder, now: datetime, ttl_s: float) -> LeaseHolder:
    expires = now + timedelta(seconds=ttl_s)
    return LeaseHolder(**{**vars(holder), "acquired_at": now, "heartbeat_at": now,
                          "expires_at": expires})  # fmt: skip


def _holder(row: Row[Any]) -> LeaseHolder:
    return LeaseHolder(**row._asdict())


def _insert_if_absent(conn: Connection, holder: LeaseHolder, table: Table) -> bool:
    values = vars(holder)
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt: Any = sqlite_insert(table).values(values).on_conflict_do_nothing()
        return conn.execute(stmt).rowcount == 1
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        # RETURNING: psycopg's rowcount of INSERT ... ON CONFLICT DO NOTHING is not 1
        stmt = pg_insert(table).values(values).on_conflict_do_nothing()
        return conn.execute(stmt.returning(table.c.pipeline)).first() is not None
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(values))
    except IntegrityError:
        return False
    return True


def _replace(conn: Connection, previous_owner: str, holder: LeaseHolder, table: Table) -> bool:
    values = {k: v for k, v in vars(holder).items() if k != "pipeline"}
    result = conn.execute(
        update(table)
        .where(table.c.pipeline == holder.pipeline, table.c.owner_id == previous_owner)
        .values(values)
    )
    return result.rowcount == 1
