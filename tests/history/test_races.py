"""Many real processes at once: schema creation, WAL switch and the lease must not race."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planner.history import HistoryStore

WORKER = Path(__file__).with_name("lease_worker.py")
REPO = Path(__file__).resolve().parents[2]


def race(url: str, tmp_path: Path, n: int, mode: str = "lease") -> list[dict[str, object]]:
    """``n`` processes open ``url`` and ask for one lease at the same moment."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    launcher = subprocess.Popen(
        [sys.executable, str(WORKER), url, str(tmp_path), str(n), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while sum((tmp_path / f"ready-{i}").exists() for i in range(n)) < n:
            assert launcher.poll() is None, launcher.communicate()[1]
            assert time.monotonic() < deadline, "workers did not get ready"
            time.sleep(0.01)
        (tmp_path / "go").write_text("go")
        assert launcher.stdout is not None
        lines = [launcher.stdout.readline() for _ in range(n)]
        (tmp_path / "done").write_text("done")
        results = [json.loads(line) for line in lines if line]
        errors = [r["error"] for r in results if "error" in r]
        assert not errors, errors
        _, err = launcher.communicate(timeout=60)
        assert launcher.returncode == 0, err
        assert len(results) == n
        return results
    finally:
        (tmp_path / "done").write_text("done")
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


@pytest.mark.slow
def test_twenty_processes_on_a_new_sqlite_file_one_lease(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "history.db"
    results = race(f"sqlite:///{path}", tmp_path, 20)
    winners = [r for r in results if r["acquired"]]
    assert len(winners) == 1
    assert {r["holder"] for r in results} == {winners[0]["holder"]}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM planner_meta").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 1


@pytest.mark.slow
@pytest.mark.postgres
def test_twenty_processes_on_a_new_postgres_database_one_lease(
    pg_fresh_url: str, tmp_path: Path
) -> None:
    results = race(pg_fresh_url, tmp_path, 20)
    winners = [r for r in results if r["acquired"]]
    assert len(winners) == 1
    assert {r["holder"] for r in results} == {winners[0]["holder"]}
    store = HistoryStore(pg_fresh_url)
    try:
        lease = store.get_lease("race")
        assert lease is not None and lease.owner_id == winners[0]["holder"]
    finally:
        store.close()


def test_concurrent_writers_lose_no_row(store_url: str, tmp_path: Path) -> None:
    results = race(store_url, tmp_path, 6, mode="write")
    assert [r["written"] for r in results] == [50] * 6
    store = HistoryStore(store_url)
    try:
        frame = store.attempts_frame("race")
        assert len(frame) == 300
        assert set(frame["status"]) == {"succeeded"}
        assert frame.groupby("run_id").size().to_dict() == {f"run-{i}": 50 for i in range(6)}
    finally:
        store.close()


@pytest.mark.slow
def test_twenty_processes_take_over_an_expired_lease_once(store_url: str, tmp_path: Path) -> None:
    from planner.history import LeaseOwner

    store = HistoryStore(store_url)
    try:
        dead = LeaseOwner("dead-owner", "another-host", 1, "dead-run")
        # a short lease that really expires (on PostgreSQL, by the server's clock)
        held = store.acquire_lease("race", dead, 0.3)
        assert held.acquired
        while store.lease_time() <= held.holder.expires_at:
            time.sleep(0.05)
    finally:
        store.close()
    results = race(store_url, tmp_path, 20)
    winners = [r for r in results if r["acquired"]]
    assert len(winners) == 1 and winners[0]["previous_run"] == "dead-run"
    assert {r["holder"] for r in results} == {winners[0]["holder"]}
