"""History fixtures: a ``store`` for each backend (SQLite file, private PostgreSQL), and
``leased``: a store with the clock its leases are judged by."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from planner.clock import FakeClock
from planner.history import HistoryStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a database that does not exist yet (SQLite) or is empty (PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    url: str = request.getfixturevalue("pg_fresh_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[HistoryStore]:
    """The same contract, once per backend."""
    history = HistoryStore(store_url)
    yield history
    assert history._engine.pool.checkedout() == 0, "a connection was left checked out"
    history.close()


class LeaseClock:
    """The clock a backend judges leases by, for backend-neutral lease tests.

    SQLite: the store's :class:`FakeClock` (one host's clock; moved, never waited for).
    PostgreSQL: the database server's ``clock_timestamp()``, which no test can move, so
    :meth:`wait` really sleeps: lease tests use lifetimes of about a second there, and
    that is what proves expiry on the server's clock.
    """

    def __init__(self, store: HistoryStore, fake: FakeClock | None) -> None:
        self.store = store
        self.fake = fake

    def now(self) -> datetime:
        """What the lease clock reads."""
        return self.store.lease_time()

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of lease time pass."""
        if self.fake is not None:
            self.fake.advance(seconds)
        else:
            time.sleep(seconds)


@pytest.fixture
def leased(store_url: str) -> Iterator[tuple[HistoryStore, LeaseClock]]:
    """A store and its lease clock (a fake clock on SQLite, the server's on PostgreSQL)."""
    fake = FakeClock(T0) if store_url.startswith("sqlite") else None
    history = HistoryStore(store_url, clock=fake) if fake is not None else HistoryStore(store_url)
    yield history, LeaseClock(history, fake)
    assert history._engine.pool.checkedout() == 0, "a connection was left checked out"
    history.close()
