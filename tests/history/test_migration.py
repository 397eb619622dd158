"""Schema version 1 -> 2 (the trained_models table): migrated on open, once, data kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text, update

from planner.errors import SchemaVersionError
from planner.history import SCHEMA_VERSION, AttemptOutcome, AttemptStart, HistoryStore
from planner.history.database import MIGRATIONS
from planner.history.schema import meta

from .conftest import T0

REPO = Path(__file__).resolve().parents[2]


def _version(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            value = conn.execute(
                select(meta.c.value).where(meta.c.key == "schema_version")
            ).scalar()
            return None if value is None else str(value)
    finally:
        engine.dispose()


def _has_table(url: str, name: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(inspect(conn).has_table(name))
    finally:
        engine.dispose()


def _make_version_1(url: str) -> None:
    """A history as version 1 left it: runs, attempts and a plan, no trained_models."""
    store = HistoryStore(url)
    try:
        store.create_run(run_id="r1", pipeline="etl", started_at=T0, concurrency=2)
        start = AttemptStart("r1", "etl", "1", "a1", 1, 5.0, {"k": 1}, 1, 2, "h", T0)
        attempt_id = store.start_attempt(start)
        store.finish_attempt(attempt_id, AttemptOutcome("succeeded", T0, 12.5, 0))
        store.finish_run("r1", "succeeded", T0)
        store.save_plan("etl", "r1", T0, 10.0, 20.0, {"steps": 1})
    finally:
        store.close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE trained_models"))
            conn.execute(update(meta).where(meta.c.key == "schema_version").values(value="1"))
    finally:
        engine.dispose()
    assert _version(url) == "1" and not _has_table(url, "trained_models")


def test_this_code_is_version_2_and_migrates_from_1() -> None:
    assert SCHEMA_VERSION == 2
    assert sorted(MIGRATIONS) == [1]


def test_a_version_1_history_is_migrated_and_keeps_its_data(store_url: str) -> None:
    _make_version_1(store_url)
    store = HistoryStore(store_url)
    try:
        assert _version(store_url) == "2"
        assert _has_table(store_url, "trained_models")
        run = store.get_run("r1")
        assert run is not None and run.status == "succeeded" and run.concurrency == 2
        (attempt,) = store.attempts_for_run("r1")
        assert (attempt.step, attempt.account, attempt.duration_s) == ("1", "a1", 12.5)
        assert attempt.params == {"k": 1}
        assert [p.predicted_s for p in store.plans("etl")] == [10.0]
        store.record_model("etl", "m1", "ab" * 32, T0)  # the new table works
        assert store.model_digest("etl", "m1") == "ab" * 32
    finally:
        store.close()
    HistoryStore(store_url).close()  # opening again: nothing left to do
    assert _version(store_url) == "2"


def test_a_newer_or_unknown_version_is_still_refused(store_url: str) -> None:
    HistoryStore(store_url).close()
    for version in ("3", "0", "v1"):
        engine = create_engine(store_url)
        with engine.begin() as conn:
            conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=version))
        engine.dispose()
        with pytest.raises(SchemaVersionError) as caught:
            HistoryStore(store_url)
        assert f"version {version};" in caught.value.what
        assert "up to 2" in caught.value.what
        assert _version(store_url) == version  # left as it was


_OPENER = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
from planner.history import HistoryStore
HistoryStore(sys.argv[1]).close()
"""


def _open_at_once(url: str, tmp_path: Path, n: int) -> None:
    """``n`` processes open ``url`` at the same moment; every one must succeed."""
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import planner.history\n" + _OPENER  # imports done before the start signal
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]
    time.sleep(1.5)  # let them import and wait for the signal
    go.write_text("go")
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures.append(err.strip().splitlines()[-1:])
    assert not failures, failures


def test_many_processes_migrate_an_old_sqlite_file_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    _make_version_1(url)
    _open_at_once(url, tmp_path, 8)
    assert _version(url) == "2" and _has_table(url, "trained_models")
    store = HistoryStore(url)
    try:
        assert store.get_run("r1") is not None and len(store.attempts_for_run("r1")) == 1
    finally:
        store.close()


@pytest.mark.postgres
def test_many_processes_migrate_an_old_postgres_database_at_once(
    pg_fresh_url: str, tmp_path: Path
) -> None:
    _make_version_1(pg_fresh_url)
    _open_at_once(pg_fresh_url, tmp_path, 8)
    assert _version(pg_fresh_url) == "2" and _has_table(pg_fresh_url, "trained_models")
