"""One run at a time: many processes at once, a SIGKILLed run taken over, expiry, signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.clock import SYSTEM_CLOCK, FakeClock
from planner.config import load_pipeline
from planner.errors import RunActiveError, UsageError
from planner.execution import Runner, RunRequest, lease_ttl
from planner.history import AttemptStart, HistoryStore, LeaseOwner

from .conftest import live, planner_cli, wait_for


def write(path: Path, **raw: object) -> Path:
    raw.setdefault("name", "guarded")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _one_holds_the_rest_refused(
    procs: list[subprocess.Popen[str]], release: Path
) -> list[tuple[int, str, str]]:
    """Wait until all but one of ``procs`` have exited (refused), let the holder's task
    end by writing ``release``, and return every ``(exit code, stdout, stderr)``."""
    try:
        refusals = len(procs) - 1
        wait_for(
            lambda: sum(p.poll() is not None for p in procs) >= refusals,
            120,
            f"{refusals} refusals",
        )
        release.write_text("go")
        return [(p.wait(timeout=60), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_twenty_processes_at_once_make_exactly_one_run(tmp_path: Path) -> None:
    """Half share a state dir (file lock), half have their own (only the lease guards)."""
    release = tmp_path / "release"
    step = {"id": "hold", "command": ["sh", "-c", f"while [ ! -e {release} ]; do sleep 0.02; done"]}
    shared = write(tmp_path / "shared" / "p.yaml", state_dir="state", steps=[step])
    db = f"sqlite:///{tmp_path / 'history.db'}"  # does not exist yet: creation races too
    files = [shared] * 10 + [
        write(tmp_path / f"own{i}" / "p.yaml", state_dir="state", steps=[step]) for i in range(10)
    ]
    procs = [planner_cli("run", str(f), "--db", db, "--quiet", cwd=tmp_path) for f in files]
    outcomes = _one_holds_the_rest_refused(procs, release)
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0] + [3] * 19, outcomes
    with HistoryStore(db) as store:
        (run,) = store.list_runs()
        assert run.status == "succeeded"
        assert store.get_lease("guarded") is None  # released at the end
    for code, _, err in outcomes:
        if code == 3:
            last = err.strip().splitlines()[-1]  # (notes may come before the error line)
            assert last.startswith("planner: error: guarded: ") and run.run_id in last, err
            assert "nothing was started" in last


@pytest.mark.postgres
def test_eight_simultaneous_runs_on_postgresql_make_exactly_one_run(
    tmp_path: Path, pg_fresh_url: str
) -> None:
    """Eight ``planner run`` processes at once on one PostgreSQL history that has no schema
    yet, each as another host (its own ``PLANNER_HOST_ID`` and state dir: no shared file
    lock), the URL in ``$PLANNER_DB``: exactly one run; seven refusals naming it."""
    release = tmp_path / "release"
    step = {"id": "hold", "command": ["sh", "-c", f"while [ ! -e {release} ]; do sleep 0.02; done"]}
    files = [write(tmp_path / f"host{i}" / "p.yaml", state_dir="state", steps=[step])
             for i in range(8)]  # fmt: skip
    procs = [
        planner_cli("run", str(f), "--quiet", cwd=tmp_path,
                    env={"PLANNER_DB": pg_fresh_url, "PLANNER_HOST_ID": f"host-{i}"})
        for i, f in enumerate(files)
    ]  # fmt: skip
    outcomes = _one_holds_the_rest_refused(procs, release)
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0] + [3] * 7, outcomes
    with HistoryStore(pg_fresh_url) as store:
        (run,) = store.list_runs()
        assert run.status == "succeeded" and run.host is not None
        assert run.host.startswith("host-")
        assert store.get_lease("guarded") is None
        (attempt,) = store.attempts_for_run(run.run_id)
        assert attempt.host == run.host  # the host id is what the history records
    for code, _, err in outcomes:
        if code == 3:
            last = err.strip().splitlines()[-1]
            assert run.run_id in last and "nothing was started" in last, err
            assert f"owner {run.host} pid" in last, err


def test_sigkilled_run_is_taken_over(tmp_path: Path) -> None:
    go = tmp_path / "go"
    pipeline_file = write(
        tmp_path / "p.yaml",
        state_dir="state",
        accounts=["a", "b"],
        concurrency={"max": 2},
        steps=[
            {"id": "hang", "per_account": True, "shell": True,
             "command": f"[ -e {go} ] || {{{{ sleep 60 & sleep 60; }}}}"},
            {"id": "after", "command": ["true"], "depends_on": ["hang"]},
        ],
    )  # fmt: skip
    db = tmp_path / "state" / "history.db"
    first = planner_cli("run", str(pipeline_file), "--quiet", cwd=tmp_path,
                        env={"PLANNER_LEASE_TTL": "2s"})  # fmt: skip
    try:
        with HistoryStore(f"sqlite:///{db}") as store:

            def both_running() -> bool:
                assert first.poll() is None, first.communicate()
                runs = store.list_runs() if db.exists() else []
                return bool(runs) and store.run_task_counts(runs[0].run_id) == {"running": 2}

            wait_for(both_running, 60, "two running tasks")
            dead_run = store.list_runs()[0].run_id
            rows = store.attempts_for_run(dead_run)
            groups = [r.pgid for r in rows]
            first.send_signal(signal.SIGKILL)
            first.wait()
            assert all(g is not None and live(g) for g in groups)  # left behind
            go.write_text("")
            pipeline = load_pipeline(pipeline_file)
            os.environ["PLANNER_LEASE_TTL"] = "2s"
            try:
                result = Runner(pipeline, store).run()
            finally:
                del os.environ["PLANNER_LEASE_TTL"]
            assert result.status == "succeeded"
            assert result.takeover is not None and result.takeover.run_id == dead_run
            assert result.takeover.reason == "owner_dead" and result.takeover.groups_stopped == 2
            old = store.get_run(dead_run)
            assert old is not None and old.status == "abandoned"
            after = store.attempts_for_run(dead_run)
            assert [r.attempt_id for r in after] == [r.attempt_id for r in rows]  # none lost
            assert {r.status for r in after} == {"interrupted"}
            assert all(r.finished_at is not None for r in after)
        wait_for(lambda: not any(live(g) for g in groups if g), 5, "groups stopped")
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.communicate()


def test_expired_lease_of_another_host_is_taken_after_the_ttl(tmp_path: Path) -> None:
    pipeline_file = write(tmp_path / "p.yaml", state_dir="state",
                          steps=[{"id": "s", "command": ["true"]}])  # fmt: skip
    pipeline = load_pipeline(pipeline_file)
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    clock = FakeClock(store_now())  # the lease's time: no waiting its ttl out
    with HistoryStore(url, clock=clock) as store:
        store.create_run(run_id="elsewhere", pipeline="guarded", started_at=clock.now())
        store.start_attempt(AttemptStart(
            run_id="elsewhere", pipeline="guarded", step="s", account=None, attempt=1,
            quantity=None, params={}, n_accounts=0, concurrency=1, host="other-host",
            started_at=clock.now(), pid=os.getpid(), pgid=os.getpgrp()))  # fmt: skip
        owner = LeaseOwner("x" * 32, "other-host", 12345, "elsewhere")
        assert store.acquire_lease("guarded", owner, 60, clock.now()).acquired
        clock.advance(59.9)
        try:
            Runner(pipeline, store, clock=clock).run()
            raise AssertionError("a second run started while the lease was held")
        except RunActiveError as exc:
            assert exc.exit_code == 3
            assert "run elsewhere is active (owner other-host pid 12345, since" in str(exc)
        clock.advance(0.2)  # past the ttl
        result = Runner(pipeline, store, clock=clock).run()
        assert result.status == "succeeded"
        assert result.takeover is not None and result.takeover.reason == "expired"
        assert result.takeover.groups_stopped == 0  # another host's groups are not ours
        record = store.get_run("elsewhere")
        assert record is not None and record.status == "abandoned"
        assert record.finished_at == clock.now()
        assert store.run_task_counts("elsewhere") == {"interrupted": 1}


def store_now() -> datetime:
    return SYSTEM_CLOCK.now()


def _signal_run(
    tmp_path: Path, grace: str, signals: int
) -> tuple[int, float, dict[str, Any], list[int]]:
    pids = tmp_path / "pids"
    pids.mkdir()
    pipeline_file = write(
        tmp_path / "p.yaml", state_dir="state", accounts=["a", "b", "c"],
        concurrency={"max": 2},
        steps=[{"id": "slow", "per_account": True, "shell": True,
                "command": f"echo $$ > {pids}/{{account}}; sleep 30"},
               {"id": "after", "command": ["true"], "depends_on": ["slow"]}],
    )  # fmt: skip
    proc = planner_cli("run", str(pipeline_file), "--json", "--grace", grace, cwd=tmp_path)
    try:
        wait_for(lambda: len(list(pids.iterdir())) == 2, 60, "two tasks")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        if signals > 1:
            # Two signals that reach a process before it ran the first handler are one
            # signal to the kernel: send the second once the first was seen (the tasks
            # that never started are then recorded cancelled).
            with HistoryStore(f"sqlite:///{tmp_path / 'state' / 'history.db'}") as store:
                run_id = store.list_runs()[0].run_id
                wait_for(lambda: store.run_task_counts(run_id).get("cancelled") == 2, 10,
                         "the first stop")  # fmt: skip
            proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    task_pids = [int(p.read_text()) for p in pids.iterdir()]
    return proc.returncode, elapsed, json.loads(out), task_pids


def test_sigterm_stops_and_records_cancelled(tmp_path: Path) -> None:
    code, elapsed, doc, task_pids = _signal_run(tmp_path, "0.3s", 1)
    assert code == 1 and elapsed < 5
    assert doc["run"]["status"] == "cancelled"
    assert doc["run"]["tasks"] == {"cancelled": 4}
    statuses = [(a["step"], a["account"], a["status"]) for a in doc["attempts"]]
    assert sorted(statuses) == [("after", None, "cancelled"), ("slow", "a", "cancelled"),
                                ("slow", "b", "cancelled"), ("slow", "c", "cancelled")]  # fmt: skip
    killed = [a for a in doc["attempts"] if a["exit_code"] is not None]
    assert len(killed) == 2 and all(a["exit_code"] == 128 + 15 for a in killed)
    assert not any(live(p) for p in task_pids)


def test_a_second_signal_kills_at_once(tmp_path: Path) -> None:
    code, elapsed, doc, task_pids = _signal_run(tmp_path, "30s", 2)
    assert code == 1 and elapsed < 5  # did not wait out the 30 s grace
    assert doc["run"]["status"] == "cancelled"
    assert {a["exit_code"] for a in doc["attempts"] if a["exit_code"] is not None} == {137}
    assert not any(live(p) for p in task_pids)


def test_heartbeat_keeps_the_lease_past_its_ttl(tmp_path: Path) -> None:
    """A run longer than the lease stays the only one: the heartbeat extends it.

    The lease's time is a fake clock moved past the ttl twice; the heartbeats themselves
    run on their real timer (every ttl / 3), and the task runs until the test releases it.
    """
    release = tmp_path / "release"
    db = f"sqlite:///{tmp_path / 'history.db'}"
    steps = [{"id": "s", "command": ["sh", "-c", f"until [ -e {release} ]; do sleep 0.02; done"]}]
    first = load_pipeline(write(tmp_path / "a" / "p.yaml", state_dir="s", lease_ttl="0.9s",
                                steps=steps))  # fmt: skip
    # Another state dir: no shared file lock, so only the lease can refuse the second run.
    second = load_pipeline(write(tmp_path / "b" / "p.yaml", state_dir="s", lease_ttl="0.9s",
                                 steps=steps))  # fmt: skip
    clock = FakeClock(store_now())
    t0 = clock.now()
    with HistoryStore(db, clock=clock) as store:
        outcome: list[object] = []
        runner = Runner(first, store, clock=clock)
        thread = threading.Thread(target=lambda: outcome.append(runner.run()))
        thread.start()
        try:
            wait_for(lambda: store.get_lease("guarded") is not None, 10, "the lease")
            for _ in range(2):  # 1.2 s of lease time: past the 0.9 s ttl
                clock.advance(0.6)

                def beat_now() -> bool:
                    holder = store.get_lease("guarded")
                    return holder is not None and holder.heartbeat_at == clock.now()

                wait_for(beat_now, 10, "a heartbeat")
            holder = store.get_lease("guarded")
            assert holder is not None and holder.acquired_at == t0
            assert holder.expires_at > clock.now() > t0 + timedelta(seconds=0.9)
            try:
                Runner(second, store, clock=clock).run()
                raise AssertionError("a second run started while the first was running")
            except RunActiveError as exc:
                assert "is active" in str(exc)
        finally:
            release.write_text("")
            thread.join()
        assert getattr(outcome[0], "status", None) == "succeeded"
        assert len(store.list_runs()) == 1


def test_lease_ttl_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = load_pipeline(write(tmp_path / "p.yaml", lease_ttl="90s",
                                   steps=[{"id": "s", "command": ["true"]}]))  # fmt: skip
    assert lease_ttl(pipeline) == 90
    monkeypatch.setenv("PLANNER_LEASE_TTL", "2s")
    assert lease_ttl(pipeline) == 2
    monkeypatch.setenv("PLANNER_LEASE_TTL", "soon")
    with pytest.raises(UsageError, match="PLANNER_LEASE_TTL"):
        lease_ttl(pipeline)


def test_a_run_that_loses_its_lease_stops(tmp_path: Path) -> None:
    pipeline = load_pipeline(write(tmp_path / "p.yaml", state_dir="s", lease_ttl="0.3s",
                                   steps=[{"id": "s", "command": ["sleep", "20"]}]))  # fmt: skip
    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as store:

        def steal() -> None:
            wait_for(lambda: store.get_lease("guarded") is not None, 10, "the lease")
            holder = store.get_lease("guarded")
            assert holder is not None
            store.release_lease("guarded", holder.owner_id)  # as if another run took it

        thief = threading.Thread(target=steal)
        thief.start()
        t0 = time.monotonic()
        result = Runner(pipeline, store, RunRequest(stop_grace=0.1, kill_grace=0.2)).run()
        thief.join()
        assert result.lease_lost and result.status == "cancelled"
        assert time.monotonic() - t0 < 5
        assert store.run_task_counts(result.run_id) == {"cancelled": 1}


def test_takeover_stops_a_task_the_dead_run_never_recorded(tmp_path: Path) -> None:
    """A runner SIGKILLed between spawn and its start row leaves a process no row names:
    its PLANNER_RUN_ID still marks it, and the takeover on this host stops it."""
    import sys

    import psutil

    pipeline_file = write(tmp_path / "p.yaml", state_dir="state",
                          steps=[{"id": "s", "command": ["true"]}])  # fmt: skip
    pipeline = load_pipeline(pipeline_file)
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={
            **os.environ,
            "PLANNER_RUN_ID": "dead-run",
            "PLANNER_STEP": "s",
            "PLANNER_ACCOUNT": "acct-7",
            "PLANNER_ATTEMPT": "2",
            "PLANNER_QUANTITY": "5",
        },
        start_new_session=True,
    )
    try:
        with HistoryStore(url) as store:
            store.create_run(run_id="dead-run", pipeline="guarded", started_at=store_now())
            gone = subprocess.Popen(["true"])
            gone.wait()  # a pid on this host that no longer exists: the owner is dead
            owner = LeaseOwner("y" * 32, os.uname().nodename, gone.pid, "dead-run")
            assert store.acquire_lease("guarded", owner, 600, store_now()).acquired
            result = Runner(pipeline, store).run()
            assert result.status == "succeeded"
            assert result.takeover is not None and result.takeover.groups_stopped == 1
            assert orphan.wait(timeout=10) != 0
            # ... and it is recorded: no task of the dead run silently disappears.
            (row,) = store.attempts_for_run("dead-run")
            assert (row.step, row.account, row.attempt, row.status) == (
                "s",
                "acct-7",
                2,
                "interrupted",
            )
            assert row.quantity == 5 and row.duration_s is not None and row.duration_s >= 0
            assert not psutil.pid_exists(orphan.pid) or psutil.Process(orphan.pid).status() == (
                psutil.STATUS_ZOMBIE
            )
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_a_busy_file_lock_without_a_lease_names_its_holder(tmp_path: Path) -> None:
    """A process holding the file lock but (still) no lease: after a short wait for its
    lease to show, the refusal names the lock file and what its holder wrote there."""
    from planner.execution.guards import LOCK_SETTLE_S, PipelineLock

    pipeline_file = write(tmp_path / "p.yaml", state_dir="state",
                          steps=[{"id": "s", "command": ["true"]}])  # fmt: skip
    pipeline = load_pipeline(pipeline_file)
    lock = PipelineLock(pipeline.state_dir, "guarded")
    assert lock.acquire("run other-run pid 1 since then")
    clock = FakeClock()
    try:
        with HistoryStore(f"sqlite:///{tmp_path / 'h.db'}") as store:
            with pytest.raises(RunActiveError) as caught:
                Runner(pipeline, store, clock=clock).run()
            assert "another planner process holds" in str(caught.value)
            assert "run other-run pid 1" in str(caught.value)
            assert sum(clock.sleeps) >= LOCK_SETTLE_S  # it waited for a lease to show
            assert store.list_runs() == []
    finally:
        lock.release()
