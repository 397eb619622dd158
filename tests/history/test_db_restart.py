"""A PostgreSQL restart in the middle of a real ``planner run``.

The test has a cluster of its own (``pg_own_cluster``): it stops the server (``pg_ctl stop
-m fast``: every session is ended, as a restart or a failover does) while the run's tasks
execute, keeps it away a few seconds, and starts it again. The run goes on: its tasks do
not wait for the database; its attempt rows are retried in order until the server is back
(the writer thread pauses), its lease heartbeat tolerates the outage, and the run ends
``succeeded`` with every attempt recorded once, started and finished.

When the database stays away longer than the lease lifetime, the run stops (its lease may
be someone else's by then) and says why; the next run takes its lease over and marks what
it left ``interrupted``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from planner.history import HistoryStore
from tests.pg import PgCluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TASKS = 16
TASK_S = 0.4


def _pipeline(folder: Path, lease_ttl: str, task_s: float = TASK_S) -> Path:
    path = folder / "restart.yaml"
    (folder / "started").mkdir(exist_ok=True)
    data = {
        "name": "restart",
        "state_dir": "state",
        "lease_ttl": lease_ttl,
        "accounts": [f"a{i:02d}" for i in range(TASKS)],
        "concurrency": {"max": 2},
        "steps": [
            {
                "id": "work",
                "per_account": True,  # each task leaves a mark: which tasks really started
                "command": ["sh", "-c", f"touch started/{{account}}; sleep {task_s:g}"],
            }
        ],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _planner_run(pipeline: Path, url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    env.update(PLANNER_DB=url, PYTHONPATH=str(REPO))  # the URL never on the command line
    return subprocess.Popen(
        [sys.executable, "-m", "planner", "run", str(pipeline), "--quiet"],
        cwd=pipeline.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _finished_attempts(url: str) -> int:
    import psycopg
    from sqlalchemy import make_url

    parsed = make_url(url)
    conninfo = (
        f"host={parsed.host} port={parsed.port} user={parsed.username} dbname={parsed.database}"
    )
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM attempts WHERE finished_at IS NOT NULL"
            ).fetchone()
    except psycopg.Error:
        return 0  # the schema is not there yet
    return int(row[0]) if row else 0


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        os.killpg(proc.pid, 9)
    return proc.communicate(timeout=30)


def test_a_run_survives_a_database_restart(
    pg_own_cluster: PgCluster, pg_own_url: str, tmp_path: Path
) -> None:
    pipeline = _pipeline(tmp_path, "30s")
    proc = _planner_run(pipeline, pg_own_url)
    try:
        _wait("three finished attempts", lambda: _finished_attempts(pg_own_url) >= 3, 60)
        assert proc.poll() is None, proc.communicate()
        stopped = time.monotonic()
        pg_own_cluster.stop()
        time.sleep(3.0)  # away for a while: tasks go on finishing meanwhile
        pg_own_cluster.start()
        away = time.monotonic() - stopped
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert proc.returncode == 0, (out, err)
    # it said it waited, and for how long
    assert "history unreachable, retrying" in err, err
    paused = [float(s) for s in re.findall(r"history reachable again after ([\d.]+)s", err)]
    assert paused and max(paused) <= away + 5, (paused, away, err)
    with HistoryStore(pg_own_url) as store:
        (run,) = store.list_runs("restart")
        assert run.status == "succeeded" and run.finished_at is not None
        rows = store.attempts_for_run(run.run_id)
        assert store.get_lease("restart") is None  # released at the end
    # every task once (no insert written twice by a retry), each started and finished
    assert sorted(r.account or "" for r in rows) == [f"a{i:02d}" for i in range(TASKS)]
    assert {r.status for r in rows} == {"succeeded"}
    assert all(r.finished_at is not None and r.duration_s is not None for r in rows)
    # the tasks did not wait for the database: some ran while it was away
    print(f"\ndatabase away {away:.1f}s; writes paused {max(paused):.1f}s; {len(rows)} rows")


def test_a_database_away_longer_than_the_lease_stops_the_run_and_loses_no_row(
    pg_own_cluster: PgCluster, pg_own_url: str, tmp_path: Path
) -> None:
    """Away 6 s with a 2 s lease: the run cannot renew its lease, so it stops its tasks
    (another host could take the lease once the server is back); it records how each
    ended once the server is back, and ends ``cancelled``: every task that started has
    its row, none stays ``running``."""
    pipeline = _pipeline(tmp_path, "2s", task_s=1.0)
    proc = _planner_run(pipeline, pg_own_url)
    try:
        _wait("two finished attempts", lambda: _finished_attempts(pg_own_url) >= 2, 60)
        pg_own_cluster.stop()
        stopped = time.monotonic()
        time.sleep(6.0)
        assert proc.poll() is None, "the run must wait to record its attempts"
        pg_own_cluster.start()
        out, err = proc.communicate(timeout=90)
        ended = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err, err
    started = sorted(p.name for p in (tmp_path / "started").iterdir())
    with HistoryStore(pg_own_url) as store:
        (run,) = store.list_runs("restart")
        rows = store.attempts_for_run(run.run_id)
        lease = store.get_lease("restart")
    assert run.status == "cancelled" and run.finished_at is not None, run
    assert lease is None  # released once the server was back
    assert len(started) < TASKS, "the run stopped starting tasks"
    ran = {r.account for r in rows if r.pid is not None}  # spawned (others never started)
    assert set(started) == ran, (started, sorted(ran))  # each task that ran, recorded once
    assert len(rows) == TASKS  # the others: cancelled, never started
    assert all(r.finished_at is not None for r in rows), [(r.account, r.status) for r in rows]
    assert "running" not in {r.status for r in rows}
    print(f"\nended {ended:.1f}s after the stop; {len(started)} started, rows: "
          f"{sorted((r.account, r.status) for r in rows)}")  # fmt: skip
