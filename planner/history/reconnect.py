"""Surviving a database that goes away for a while (a PostgreSQL restart, a failover).

:func:`is_disconnect` tells a lost or refused connection from every other database error;
:func:`retry_disconnects` runs one write again, with exponential backoff, while that is
the error, for a bounded time (:data:`WRITE_RETRY_S`, or a run's lease lifetime when
longer). Each pooled connection is checked before use
(``pool_pre_ping``), so after a restart the pool replaces its dead connections by itself.

A write whose connection dropped while it committed may have been committed or not: the
retry is told it is one (``retrying=True``), so that an insert can first look for the row
its first try may have written (:meth:`AttemptLookup.attempt_id_of`) instead of writing
it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError, OperationalError

from planner.clock import Clock
from planner.errors import StoreError
from planner.history.schema import attempts

__all__ = ["WRITE_RETRY_S", "AttemptLookup", "is_disconnect", "retry_disconnects"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a run keeps retrying one history write (an attempt row, its own end) from its
#: first failure, at least: the run's lease lifetime when that is longer. The lease is
#: judged separately: a run that cannot renew it for a lifetime stops its tasks, and then
#: waits up to this long to record how they ended, so that no attempt goes unrecorded
#: when the database comes back within it.
WRITE_RETRY_S = 120.0

#: SQLSTATE classes of a lost server: 08 (connection exception), 57P01-57P03 (admin
#: shutdown, crash shutdown, cannot connect now: starting up or shutting down).
_GONE_STATES = ("08", "57P01", "57P02", "57P03")


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` (a :class:`StoreError` or a SQLAlchemy error) means the database
    connection was lost or could not be opened, rather than a refused statement."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if not isinstance(cause, DBAPIError):
        return False
    if cause.connection_invalidated:
        return True
    orig = cause.orig
    if not isinstance(cause, OperationalError) or orig is None:
        return False
    if not type(orig).__module__.startswith("psycopg"):
        return False  # SQLite's OperationalError is a busy or broken file, not a server gone
    state = getattr(orig, "sqlstate", None)
    return state is None or str(state).startswith(_GONE_STATES)


def retry_disconnects(
    write: Callable[[bool], T],
    *,
    budget_s: float,
    clock: Clock,
    what: str = "history write",
    first_s: float = 0.1,
    cap_s: float = 2.0,
) -> T:
    """``write(retrying)``, again while it fails with a lost connection, for at most
    ``budget_s`` seconds from the first failure (backoff from ``first_s``, doubling, at
    most ``cap_s``); then its last error. Other errors are raised at once."""
    failed_at: float | None = None
    delay = first_s
    while True:
        try:
            result = write(failed_at is not None)
        except StoreError as exc:
            if not is_disconnect(exc):
                raise
            now = clock.monotonic()
            if failed_at is None:
                failed_at = now
                log.warning("%s: history unreachable, retrying for up to %.0fs: %s",
                            what, budget_s, exc.what)  # fmt: skip
            left = failed_at + budget_s - now
            if left <= 0:
                raise
            clock.sleep(min(delay, left))
            delay = min(delay * 2, cap_s)
            continue
        if failed_at is not None:
            log.warning("%s: history reachable again after %.1fs",
                        what, clock.monotonic() - failed_at)  # fmt: skip
        return result


class AttemptLookup:
    """Finding an attempt row by what identifies it in its run (a mixin of the store)."""

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def attempt_id_of(
        self, run_id: str, step: str, account: str | None, attempt: int
    ) -> int | None:
        """The id of attempt number ``attempt`` of task (``step``, ``account``) in run
        ``run_id``, if it was written (the newest such row)."""
        account_is = (
            attempts.c.account.is_(None) if account is None else attempts.c.account == account
        )
        query = (
            select(attempts.c.attempt_id)
            .where(
                attempts.c.run_id == run_id,
                attempts.c.step == step,
                account_is,
                attempts.c.attempt == attempt,
            )
            .order_by(attempts.c.attempt_id.desc())
            .limit(1)
        )
        with self._read() as conn:
            found = conn.execute(query).scalar()
        return int(found) if found is not None else None
