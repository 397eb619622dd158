"""The Dask executor against a scheduler and two workers started as separate processes on
loopback: ``planner run --executor dask://...`` as a real process, a worker killed with
SIGKILL mid-task (retried by policy, never run a third time, its task's process gone), and
a scheduler killed mid-run (the run ends cleanly, every attempt row finished)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.config import Pipeline
from planner.execution import RunControl, Runner, RunRequest
from planner.history import HistoryStore

from .conftest import live, planner_cli, wait_for
from .dask_cluster import ProcessCluster, process_cluster, subprocess_env

__all__ = ["process_cluster"]  # the fixture, imported to be found

pytestmark = pytest.mark.slow


def _worker_of(pid: int) -> int:
    """The pid of the Dask worker that started task process ``pid`` (its environment)."""
    with open(f"/proc/{pid}/environ", "rb") as fh:
        for item in fh.read().split(b"\0"):
            if item.startswith(b"PLANNER_DASK_WORKER="):
                return int(item.split(b"=", 1)[1])
    raise AssertionError(f"process {pid} was not started by a Dask worker")


def test_planner_run_on_a_separate_scheduler_and_workers(
    process_cluster: ProcessCluster, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    pipeline = {
        "name": "remote",
        "accounts": ["a", "b", "c", "d"],
        "steps": [
            {
                "id": "1",
                "command": f"echo $PLANNER_DASK_WORKER > {seen}/{{account}}",
                "shell": True,
                "per_account": True,
            },
            {"id": "2", "command": ["true"], "depends_on": "1"},
        ],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(pipeline))
    flag = process_cluster.address.replace("tcp://", "dask://")
    cli = planner_cli(
        "run", "p.yaml", "--executor", flag, "--json", cwd=tmp_path, env=subprocess_env()
    )
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    document = json.loads(out)
    assert document["run"]["status"] == "succeeded"
    assert len(document["attempts"]) == 5
    workers = {p.read_text().strip() for p in seen.iterdir()}
    assert len(workers) >= 1 and workers <= {str(w.pid) for w in process_cluster.workers}


def test_planner_run_without_a_worker_says_so(tmp_path: Path) -> None:
    from .dask_cluster import need_dask

    need_dask()
    cluster = ProcessCluster(tmp_path)
    try:
        address = cluster.start_scheduler()
        (tmp_path / "p.yaml").write_text(
            yaml.safe_dump(
                {
                    "name": "empty",
                    "executor": {"kind": "dask", "address": address, "worker_wait": "1s"},
                    "steps": [{"id": "1", "command": ["true"]}],
                }
            )
        )
        cli = planner_cli("run", "p.yaml", cwd=tmp_path, env=subprocess_env())
        _, err = cli.communicate(timeout=60)
    finally:
        cluster.kill_all()
    assert cli.returncode == 2
    assert err.strip() == f"planner: error: {address}: no Dask worker joined within 1s"


def test_a_worker_killed_mid_task_is_retried_once_by_policy(
    process_cluster: ProcessCluster,
    tmp_path: Path,
    make_pipeline: Callable[..., Pipeline],
) -> None:
    from planner.execution.dask.executor import DaskExecutor

    runs = tmp_path / "runs"
    pids = tmp_path / "pids"
    pipeline = make_pipeline(
        steps=[
            {
                "id": "1",
                "command": f"echo $PLANNER_ATTEMPT >> {runs}; echo $$ >> {pids}; sleep 2",
                "shell": True,
                "retry": {"on": {"lost": {"max_retries": 2, "base": "0.2s", "jitter": False}}},
            }
        ]
    )
    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as store:
        control = RunControl()
        executor = DaskExecutor(process_cluster.address, worker_wait_s=30, control=control)
        runner = Runner(pipeline, store, RunRequest(), executor=executor, control=control)
        results: list[Any] = []
        thread = threading.Thread(target=lambda: results.append(runner.run()))
        thread.start()
        wait_for(lambda: pids.exists() and pids.read_text().strip() != "", 60, "the task")
        task = int(pids.read_text().split()[0])
        worker = _worker_of(task)
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: not live(task), 5, "the killed worker's task to be gone")
        assert time.monotonic() - killed < 5
        thread.join(60)
        assert not thread.is_alive() and results
        time.sleep(1.0)  # a silent re-run would have shown by now
        rows = store.attempts_for_run(results[0].run_id)
    assert [(a.attempt, a.status, a.error_class) for a in rows] == [
        (1, "interrupted", "lost"),
        (2, "succeeded", None),
    ]
    assert runs.read_text().split() == ["1", "2"]  # exactly twice: no silent third run
    assert results[0].status == "succeeded"


def test_a_lost_scheduler_ends_the_run_cleanly(
    process_cluster: ProcessCluster,
    tmp_path: Path,
    make_pipeline: Callable[..., Pipeline],
) -> None:
    from planner.execution.dask.executor import DaskExecutor

    started = tmp_path / "started"
    started.mkdir()
    pipeline = make_pipeline(
        accounts=["a", "b", "c", "d"],
        steps=[
            {
                "id": "1",
                "command": f"touch {started}/{{account}}; sleep 30",
                "shell": True,
                "per_account": True,
            }
        ],
    )
    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as store:
        control = RunControl()
        executor = DaskExecutor(process_cluster.address, worker_wait_s=30, control=control)
        runner = Runner(
            pipeline, store, RunRequest(concurrency=2, stop_grace=1), executor=executor,
            control=control,
        )  # fmt: skip
        results: list[Any] = []
        thread = threading.Thread(target=lambda: results.append(runner.run()))
        thread.start()
        wait_for(lambda: len(list(started.iterdir())) == 2, 60, "two tasks to start")
        assert process_cluster.scheduler is not None
        os.killpg(process_cluster.scheduler.pid, signal.SIGKILL)
        lost = time.monotonic()
        thread.join(30)
        assert not thread.is_alive() and results, "the run did not end"
        assert time.monotonic() - lost < 20
        rows = store.attempts_for_run(results[0].run_id)
        run = store.get_run(results[0].run_id)
    assert run is not None and run.status == "cancelled" and run.finished_at is not None
    assert all(a.finished_at is not None for a in rows)
    assert sorted(a.status for a in rows) == [
        "cancelled",
        "cancelled",
        "interrupted",
        "interrupted",
    ]
