"""Opening a database: schema version, SQLite settings, where it lives, and store errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update

from planner.config.loader import parse_pipeline
from planner.errors import SchemaVersionError, StoreError
from planner.history import SCHEMA_VERSION, HistoryStore, history_url
from planner.history import database as history_database
from planner.history.database import mask_url
from planner.history.schema import meta

from .conftest import T0


def test_unknown_schema_version_is_refused(store: HistoryStore, store_url: str) -> None:
    store.close()
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(update(meta).where(meta.c.key == "schema_version").values(value="99"))
    engine.dispose()
    with pytest.raises(SchemaVersionError) as caught:
        HistoryStore(store_url)
    assert caught.value.where == mask_url(store_url)
    assert "version 99" in caught.value.what and str(SCHEMA_VERSION) in caught.value.what


def test_sqlite_file_is_created_in_wal_with_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state" / "history.db"
    store = HistoryStore(f"sqlite:///{path}")
    try:
        assert path.exists()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with store._engine.connect() as conn:  # every pooled connection gets the timeout
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        store.close()


def test_for_pipeline_resolves_db_option_env_and_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = {"name": "nightly", "state_dir": "st", "steps": [{"id": "1", "command": ["true"]}]}
    pipeline, issues = parse_pipeline(raw, base_dir=tmp_path)
    assert pipeline is not None, issues
    monkeypatch.delenv("PLANNER_DB", raising=False)
    HistoryStore.for_pipeline(pipeline).close()
    assert (tmp_path / "st" / "history.db").exists()
    monkeypatch.setenv("PLANNER_DB", f"sqlite:///{tmp_path / 'env.db'}")
    HistoryStore.for_pipeline(pipeline).close()
    assert (tmp_path / "env.db").exists()
    explicit = f"sqlite:///{tmp_path / 'explicit.db'}"
    assert history_url(explicit, tmp_path) == explicit
    HistoryStore.for_pipeline(pipeline, db=explicit).close()
    assert (tmp_path / "explicit.db").exists()


def test_unopenable_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "history.db").mkdir()  # a folder where the file should be
    with pytest.raises(StoreError) as caught:
        HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    assert caught.value.where == f"sqlite:///{tmp_path / 'history.db'}"
    assert "unable to open" in caught.value.what


def test_bad_url_and_unreachable_server_hide_the_password() -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        HistoryStore("no such url")
    with pytest.raises(StoreError) as caught:
        HistoryStore("postgresql+psycopg://planner:s3cret@127.0.0.1:1/history")
    assert "s3cret" not in str(caught.value)
    assert caught.value.where == "postgresql+psycopg://planner:***@127.0.0.1:1/history"


def test_locked_beyond_the_busy_timeout_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "history.db"
    HistoryStore(f"sqlite:///{path}").close()
    monkeypatch.setattr(history_database, "BUSY_TIMEOUT_S", 0.2)
    store = HistoryStore(f"sqlite:///{path}")
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        with pytest.raises(StoreError, match="database is locked"):
            store.create_run(run_id="r1", pipeline="nightly", started_at=T0)
        blocker.execute("ROLLBACK")
        store.create_run(run_id="r1", pipeline="nightly", started_at=T0)
    finally:
        blocker.close()
        store.close()


def test_importing_the_history_does_not_import_pandas() -> None:
    import subprocess
    import sys

    code = "import sys, planner.history; print('pandas' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not SQLite at all, " * 100)
    with pytest.raises(StoreError, match="file is not a database"):
        HistoryStore(f"sqlite:///{path}")
