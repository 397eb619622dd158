"""``planner status``: the scheduler's view of each pipeline, from the history (the
service's documents at a given ``now``, and the command on a real SQLite file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.history import HistoryStore, LeaseOwner
from planner.service.status import pipeline_status

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as history:
        yield history


def _run(
    store: HistoryStore, run_id: str, pipeline: str, start: datetime, seconds: float | None
) -> None:
    store.create_run(run_id=run_id, pipeline=pipeline, started_at=start, host="h", pid=1)
    if seconds is not None:
        store.finish_run(run_id, "succeeded", start + timedelta(seconds=seconds))


def test_nothing_in_the_history_is_no_pipeline(store: HistoryStore) -> None:
    assert pipeline_status(store, None, T0) == []
    assert pipeline_status(store, [], T0) == []


def test_an_idle_pipeline_with_its_leader_last_run_and_next_start(store: HistoryStore) -> None:
    _run(store, "r1", "etl", T0, 125.5)
    store.save_plan("etl", "r1", T0, 120.0, 150.0, {})
    daemon = LeaseOwner("daemon-1", "host-a", 321)
    assert store.acquire_leader("etl", daemon, 60, T0 + timedelta(minutes=3)).acquired
    store.record_decision(
        "etl", "scheduled", T0 + timedelta(minutes=1), "old", next_start=T0 + timedelta(hours=1)
    )
    decided = T0 + timedelta(minutes=2, seconds=30)
    store.record_decision(
        "etl",
        "scheduled",
        decided,
        "the bound fits the cadence",
        next_start=T0 + timedelta(hours=2),
        interval_s=7200,
    )
    store.record_decision("etl", "started", decided + timedelta(seconds=1), "due")  # newer

    now = T0 + timedelta(minutes=3, seconds=30)
    (doc,) = pipeline_status(store, None, now)
    assert doc == {
        "pipeline": "etl",
        "leader": {
            "owner_id": "daemon-1",
            "host": "host-a",
            "pid": 321,
            "heartbeat_at": (T0 + timedelta(minutes=3)).isoformat(),
            "expires_at": (T0 + timedelta(minutes=4)).isoformat(),
            "alive": True,
        },
        "state": "idle",
        "run_id": None,
        "last_run": {
            "run_id": "r1",
            "status": "succeeded",
            "started_at": T0.isoformat(),
            "finished_at": (T0 + timedelta(seconds=125.5)).isoformat(),
            "duration_s": 125.5,
            "predicted_s": 120.0,
            "bound_s": 150.0,
        },
        "next_start": (T0 + timedelta(hours=2)).isoformat(),
        "next_reason": "the bound fits the cadence",
        "decided_at": decided.isoformat(),
        "last_decision": {
            "kind": "started",
            "at": (decided + timedelta(seconds=1)).isoformat(),
            "reason": "due",
        },
    }
    json.dumps(doc)  # plain JSON, no default needed
    # the leader's row outlives its expiry: shown, not alive
    (later,) = pipeline_status(store, ["etl"], T0 + timedelta(minutes=4))
    assert later["leader"]["alive"] is False


def test_a_run_holding_its_lease_is_running_and_the_previous_one_is_the_last(
    store: HistoryStore,
) -> None:
    _run(store, "r1", "etl", T0, 60)
    _run(store, "r2", "etl", T0 + timedelta(hours=1), None)
    owner = LeaseOwner("run-owner", "host-a", 99, "r2")
    assert store.acquire_lease("etl", owner, 60, T0 + timedelta(hours=1)).acquired
    store.record_decision("etl", "deferred", T0 + timedelta(hours=1), "busy")

    now = T0 + timedelta(hours=1, seconds=30)
    (doc,) = pipeline_status(store, ["etl"], now)
    assert (doc["state"], doc["run_id"]) == ("running", "r2")  # running wins over deferred
    assert doc["last_run"]["run_id"] == "r1" and doc["last_run"]["predicted_s"] is None
    assert doc["leader"] is None and doc["next_start"] is None

    # the lease expired (its process died): not running; the run shows as it was left
    (stale,) = pipeline_status(store, ["etl"], T0 + timedelta(hours=1, minutes=1))
    assert (stale["state"], stale["run_id"]) == ("deferred", None)
    assert stale["last_run"]["run_id"] == "r2" and stale["last_run"]["status"] == "running"
    assert stale["last_run"]["duration_s"] is None

    # a lease held for another run does not make this one running
    store.release_lease("etl", "run-owner")
    other = LeaseOwner("other", "host-a", 98, "r9")
    assert store.acquire_lease("etl", other, 600, now).acquired
    (doc,) = pipeline_status(store, ["etl"], now)
    assert doc["state"] == "deferred" and doc["last_run"]["run_id"] == "r2"


def test_deferred_only_while_it_is_the_newest_decision(store: HistoryStore) -> None:
    store.record_decision("etl", "deferred", T0, "run r1 is active", next_start=T0)
    (doc,) = pipeline_status(store, ["etl"], T0)
    assert doc["state"] == "deferred" and doc["last_run"] is None
    assert doc["last_decision"]["reason"] == "run r1 is active"
    assert doc["next_start"] == T0.isoformat()  # when the daemon looks again
    store.record_decision("etl", "scheduled", T0 + timedelta(seconds=1), "next", next_start=T0)
    (doc,) = pipeline_status(store, ["etl"], T0)
    assert doc["state"] == "idle" and doc["next_reason"] == "next"


def test_which_pipelines_are_shown(store: HistoryStore) -> None:
    _run(store, "r1", "by-run", T0, 1)
    store.acquire_leader("by-leader", LeaseOwner("d", "h", 1), 60, T0)
    store.record_decision("by-decision", "refused", T0, "no memory")
    found = pipeline_status(store, None, T0)
    assert [d["pipeline"] for d in found] == ["by-decision", "by-leader", "by-run"]
    # named ones: in the order given, once each, known or not
    named = pipeline_status(store, ["nobody", "by-run", "nobody"], T0)
    assert [d["pipeline"] for d in named] == ["nobody", "by-run"]
    assert named[0] == {
        "pipeline": "nobody",
        "leader": None,
        "state": "idle",
        "run_id": None,
        "last_run": None,
        "next_start": None,
        "next_reason": None,
        "decided_at": None,
        "last_decision": None,
    }


# -- the command --------------------------------------------------------------------------


def _status(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("PLANNER_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "planner", "status", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


def _fill(db: Path) -> tuple[datetime, datetime]:
    """A history with a leader, a scheduled next start and a finished run of ``etl``,
    and a run of ``other``; returns (next start, when it was decided)."""
    now = datetime.now(UTC)
    next_start = now + timedelta(minutes=5)
    with HistoryStore(f"sqlite:///{db}") as store:
        _run(store, "r1", "etl", now - timedelta(hours=1), 90)
        store.save_plan("etl", "r1", now - timedelta(hours=1), 80.0, 100.0, {})
        _run(store, "r2", "other", now - timedelta(hours=2), 30)
        owner = LeaseOwner("daemon-1", "host-a", 4242)
        assert store.acquire_leader("etl", owner, 3600, now).acquired
        store.record_decision(
            "etl", "scheduled", now, "cadence 1h, the bound fits", next_start=next_start
        )
    return next_start, now


def test_status_json_on_a_real_file(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    next_start, decided = _fill(db)
    done = _status("--json", "--db", f"sqlite:///{db}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["history"] == f"sqlite:///{db}"
    datetime.fromisoformat(document["now"])
    rows: dict[str, Any] = {row["pipeline"]: row for row in document["pipelines"]}
    assert list(rows) == ["etl", "other"]
    etl = rows["etl"]
    assert etl["leader"]["host"] == "host-a" and etl["leader"]["pid"] == 4242
    assert etl["leader"]["alive"] is True
    assert etl["state"] == "idle"
    assert datetime.fromisoformat(etl["next_start"]) == next_start
    assert datetime.fromisoformat(etl["decided_at"]) == decided
    assert etl["next_reason"] == "cadence 1h, the bound fits"
    assert etl["last_run"]["run_id"] == "r1" and etl["last_run"]["duration_s"] == 90.0
    assert etl["last_run"]["predicted_s"] == 80.0
    assert rows["other"]["leader"] is None and rows["other"]["next_start"] is None

    done = _status("etl", "--json", "--db", f"sqlite:///{db}", cwd=tmp_path)
    assert [row["pipeline"] for row in json.loads(done.stdout)["pipelines"]] == ["etl"]


def test_status_table_and_a_pipeline_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _fill(state / "history.db")
    pipeline = tmp_path / "etl.yaml"
    raw = {"name": "etl", "state_dir": str(state), "steps": [{"id": "a", "command": ["true"]}]}
    pipeline.write_text(yaml.safe_dump(raw), encoding="utf-8")
    done = _status(str(pipeline), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "host-a:4242" in out and "idle" in out
    assert "succeeded 1m 30s vs 1m 20s" in out
    assert "(in 4m " in out or "(in 5m " in out
    assert "cadence 1h, the bound fits" in out
    assert "other" not in out  # only the pipeline asked for
    assert "no daemon" not in out


def test_status_without_a_daemon_says_what_to_run(tmp_path: Path) -> None:
    missing = tmp_path / "nothing" / "history.db"
    done = _status("--db", f"sqlite:///{missing}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"no daemon has scheduled anything in sqlite:///{missing}: "
        "start one with: planner daemon PIPELINE"
    )
    assert not missing.parent.exists()  # reading creates nothing
    done = _status("--json", "--db", f"sqlite:///{missing}", cwd=tmp_path)
    assert json.loads(done.stdout)["pipelines"] == []

    db = tmp_path / "runs-only.db"
    with HistoryStore(f"sqlite:///{db}") as store:
        _run(store, "r1", "etl", datetime.now(UTC) - timedelta(minutes=1), 12)
    done = _status("--db", f"sqlite:///{db}", cwd=tmp_path)
    assert "etl" in done.stdout and "none" in done.stdout  # the run, no leader
    assert "no daemon has scheduled anything in" in done.stdout
