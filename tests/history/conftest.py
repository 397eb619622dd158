"""History fixtures: a ``store`` for each backend (SQLite file, private PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

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
