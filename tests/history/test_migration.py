"""Schema migrations on open, once, data kept: 1 -> 2 (the trained_models table),
2 -> 3 (alerts and their deliveries, pauses) and 3 -> 4 (the scheduler's leaders and
decisions), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text, update

from planner.errors import SchemaVersionError
from planner.history import (
    SCHEMA_VERSION,
    AttemptOutcome,
    AttemptStart,
    HistoryStore,
    LeaseOwner,
)
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


#: The tables each version added, newest last: dropped to make an older history.
_ADDED_IN = {
    2: ("trained_models",),
    3: ("alert_deliveries", "alerts", "pauses"),
    4: ("decisions", "leaders"),
    5: ("limit_changes",),
}
CURRENT = str(SCHEMA_VERSION)


def _make_version(url: str, version: int) -> None:
    """A history as ``version`` left it: runs, attempts, a plan (and from version 2 a
    recorded model), without the tables later versions added."""
    store = HistoryStore(url)
    try:
        store.create_run(run_id="r1", pipeline="etl", started_at=T0, concurrency=2)
        start = AttemptStart("r1", "etl", "1", "a1", 1, 5.0, {"k": 1}, 1, 2, "h", T0)
        attempt_id = store.start_attempt(start)
        store.finish_attempt(attempt_id, AttemptOutcome("succeeded", T0, 12.5, 0))
        store.finish_run("r1", "succeeded", T0)
        store.save_plan("etl", "r1", T0, 10.0, 20.0, {"steps": 1})
        if version >= 2:
            store.record_model("etl", "m0", "cd" * 32, T0)
    finally:
        store.close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for added in sorted(_ADDED_IN, reverse=True):
                if added > version:
                    for table in _ADDED_IN[added]:
                        conn.execute(text(f"DROP TABLE {table}"))
            conn.execute(
                update(meta).where(meta.c.key == "schema_version").values(value=str(version))
            )
    finally:
        engine.dispose()
    assert _version(url) == str(version)
    for added, tables in _ADDED_IN.items():
        assert all(_has_table(url, t) == (added <= version) for t in tables), (added, tables)


def _make_version_1(url: str) -> None:
    _make_version(url, 1)
    assert not _has_table(url, "trained_models")


def test_this_code_is_version_5_and_migrates_from_1_to_4() -> None:
    assert SCHEMA_VERSION == 5
    assert sorted(MIGRATIONS) == [1, 2, 3, 4]


def test_a_version_1_history_is_migrated_and_keeps_its_data(store_url: str) -> None:
    _make_version_1(store_url)
    store = HistoryStore(store_url)
    try:
        assert _version(store_url) == CURRENT
        assert _has_table(store_url, "trained_models") and _has_table(store_url, "alerts")
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
    assert _version(store_url) == CURRENT


def test_a_version_2_history_is_migrated_and_keeps_its_data(store_url: str) -> None:
    _make_version(store_url, 2)
    store = HistoryStore(store_url)
    try:
        assert _version(store_url) == CURRENT
        assert _has_table(store_url, "alerts") and _has_table(store_url, "alert_deliveries")
        run = store.get_run("r1")
        assert run is not None and run.status == "succeeded"
        assert [a.duration_s for a in store.attempts_for_run("r1")] == [12.5]
        assert [p.bound_s for p in store.plans("etl")] == [20.0]
        assert store.model_digest("etl", "m0") == "cd" * 32  # the ledger is kept
        alert_id = store.record_alert(  # the new tables work
            pipeline="etl", level="warning", kind="run_late", at=T0, text="late", sinks=["log"]
        )
        assert store.update_delivery(alert_id, "log", status="sent", attempts=1, sent_at=T0)
        (record,) = store.alerts("etl")
        assert [(d.sink, d.status) for d in record.deliveries] == [("log", "sent")]
    finally:
        store.close()
    HistoryStore(store_url).close()
    assert _version(store_url) == CURRENT


def test_a_version_3_history_is_migrated_to_4_and_keeps_its_data(store_url: str) -> None:
    _make_version(store_url, 3)
    store = HistoryStore(store_url)
    try:
        assert _version(store_url) == CURRENT
        assert _has_table(store_url, "leaders") and _has_table(store_url, "decisions")
        run = store.get_run("r1")
        assert run is not None and run.status == "succeeded"
        assert [a.duration_s for a in store.attempts_for_run("r1")] == [12.5]
        assert store.model_digest("etl", "m0") == "cd" * 32
        assert store.leaders() == {} and store.decisions() == []
        owner = LeaseOwner("daemon-1", "host-a", os.getpid())
        assert store.acquire_leader("etl", owner, 60, T0).acquired  # the new tables work
        store.record_decision("etl", "scheduled", T0, "every day", next_start=T0)
        (decision,) = store.decisions("etl")
        assert (decision.kind, decision.next_start) == ("scheduled", T0)
        assert store.leaders()["etl"].owner_id == "daemon-1"
    finally:
        store.close()
    HistoryStore(store_url).close()
    assert _version(store_url) == CURRENT


def test_a_version_4_history_is_migrated_to_5_and_keeps_its_data(store_url: str) -> None:
    _make_version(store_url, 4)
    assert not _has_table(store_url, "limit_changes")
    store = HistoryStore(store_url)
    try:
        assert _version(store_url) == "5"
        run = store.get_run("r1")
        assert run is not None and run.status == "succeeded"
        assert [a.duration_s for a in store.attempts_for_run("r1")] == [12.5]
        assert store.limit_changes("r1") == []
        store.record_limit_change("r1", "etl", at=T0, from_limit=None, to_limit=2, reason="start")
        store.record_limit_change(
            "r1", "etl", at=T0, from_limit=2, to_limit=4, reason="it paid", detail={"x": 1.5}
        )
        changes = store.limit_changes("r1")
        assert [(c["from"], c["to"], c["reason"]) for c in changes] == [
            (None, 2, "start"),
            (2, 4, "it paid"),
        ]
        assert changes[1]["detail"] == {"x": 1.5} and changes[0]["at"] == T0
    finally:
        store.close()
    HistoryStore(store_url).close()
    assert _version(store_url) == "5"


def test_a_newer_or_unknown_version_is_still_refused(store_url: str) -> None:
    HistoryStore(store_url).close()
    for version in (str(SCHEMA_VERSION + 1), "0", "v1"):
        engine = create_engine(store_url)
        with engine.begin() as conn:
            conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=version))
        engine.dispose()
        with pytest.raises(SchemaVersionError) as caught:
            HistoryStore(store_url)
        assert f"version {version};" in caught.value.what
        assert f"up to {SCHEMA_VERSION}" in caught.value.what
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
    assert _version(url) == CURRENT and _has_table(url, "trained_models")
    assert _has_table(url, "alerts")
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
    assert _version(pg_fresh_url) == CURRENT and _has_table(pg_fresh_url, "trained_models")
    assert _has_table(pg_fresh_url, "alert_deliveries")


def test_many_processes_migrate_a_version_2_sqlite_file_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    _make_version(url, 2)
    _open_at_once(url, tmp_path, 8)
    assert _version(url) == CURRENT and _has_table(url, "alert_deliveries")
    store = HistoryStore(url)
    try:
        assert store.model_digest("etl", "m0") == "cd" * 32 and store.alerts() == []
    finally:
        store.close()


@pytest.mark.postgres
def test_many_processes_migrate_a_version_2_postgres_database_at_once(
    pg_fresh_url: str, tmp_path: Path
) -> None:
    _make_version(pg_fresh_url, 2)
    _open_at_once(pg_fresh_url, tmp_path, 8)
    assert _version(pg_fresh_url) == CURRENT and _has_table(pg_fresh_url, "alerts")
    store = HistoryStore(pg_fresh_url)
    try:
        assert store.model_digest("etl", "m0") == "cd" * 32 and store.alerts() == []
    finally:
        store.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_many_processes_migrate_a_version_3_history_at_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'history.db'}"
    else:
        url = str(request.getfixturevalue("pg_fresh_url"))
    _make_version(url, 3)
    _open_at_once(url, tmp_path, 8)
    assert _version(url) == CURRENT
    assert _has_table(url, "leaders") and _has_table(url, "decisions")
    store = HistoryStore(url)
    try:
        assert store.model_digest("etl", "m0") == "cd" * 32 and store.decisions() == []
    finally:
        store.close()
