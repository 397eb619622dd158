"""The Dask executor on a real ``LocalCluster`` (two worker processes, one thread each),
through the real runner: figures measured on the worker, the stderr tail back here, a
timeout and a stop that kill the whole tree on the worker, and the executor's errors."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from planner.config import Pipeline
from planner.errors import ClusterError
from planner.execution import RunControl, Runner, RunRequest
from planner.history import HistoryStore

from .conftest import live, wait_for
from .dask_cluster import need_dask

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    need_dask()
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def history(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as store:
        yield store


def _runner(
    pipeline: Pipeline, store: HistoryStore, address: str, **request: Any
) -> tuple[Runner, RunControl]:
    from planner.execution.dask.executor import DaskExecutor

    control = RunControl()
    executor = DaskExecutor(address, worker_wait_s=30, control=control)
    request.setdefault("concurrency", 2)
    runner = Runner(pipeline, store, RunRequest(**request), executor=executor, control=control)
    return runner, control


def test_attempts_measured_on_the_worker(
    cluster_address: str, history: HistoryStore, make_pipeline: Callable[..., Pipeline]
) -> None:
    grow = (
        "x = bytearray(80 * 2**20)\nimport time\nt = time.time()\nwhile time.time() - t < 0.4: pass"
    )
    pipeline = make_pipeline(
        steps=[
            {"id": "big", "command": ["python3", "-c", grow]},
            {
                "id": "bad",
                "command": "echo 'went wrong: ETIMEDOUT' >&2; echo $PLANNER_DASK_WORKER; exit 3",
                "shell": True,
            },
        ]
    )
    runner, _ = _runner(pipeline, history, cluster_address)
    result = runner.run()
    rows = {a.step: a for a in history.attempts_for_run(result.run_id)}
    big, bad = rows["big"], rows["bad"]
    assert big.status == "succeeded" and bad.status == "failed" and bad.exit_code == 3
    assert big.peak_rss_mb is not None and big.peak_rss_mb >= 80  # the tree's, on the worker
    assert big.cpu_s is not None and big.cpu_s >= 0.2
    assert big.duration_s is not None and big.duration_s >= 0.4
    assert bad.stderr_tail is not None and "went wrong: ETIMEDOUT" in bad.stderr_tail
    worker_pid = bad.stderr_tail.strip().splitlines()[-1]
    assert worker_pid.isdigit() and int(worker_pid) != os.getpid()  # ran on a worker
    log = pipeline.state_dir / "logs" / result.run_id
    assert any("went wrong" in p.read_text() for p in log.rglob("*.log"))


def test_timeout_kills_the_tree_on_the_worker(
    cluster_address: str,
    history: HistoryStore,
    make_pipeline: Callable[..., Pipeline],
    tmp_path: Path,
) -> None:
    pids = tmp_path / "grandchild.pid"
    pipeline = make_pipeline(
        steps=[
            {
                "id": "slow",
                "command": f"sleep 60 & echo $! > {pids}; wait",
                "shell": True,
                "timeout": "1s",
            }
        ]
    )
    runner, _ = _runner(pipeline, history, cluster_address, kill_grace=1.0)
    started = time.monotonic()
    result = runner.run()
    (row,) = history.attempts_for_run(result.run_id)
    assert row.status == "timed_out" and row.error_class == "timeout"
    assert time.monotonic() - started < 15
    grandchild = int(pids.read_text())
    wait_for(lambda: not live(grandchild), 5, "the grandchild to be gone")


def test_a_stop_kills_the_tree_on_the_worker(
    cluster_address: str,
    history: HistoryStore,
    make_pipeline: Callable[..., Pipeline],
    tmp_path: Path,
) -> None:
    pids = tmp_path / "grandchild.pid"
    pipeline = make_pipeline(
        steps=[
            {"id": "long", "command": f"sleep 60 & echo $! > {pids}; wait", "shell": True},
            {"id": "after", "command": ["true"], "depends_on": "long"},
        ]
    )
    runner, control = _runner(pipeline, history, cluster_address, stop_grace=0.2, kill_grace=1)
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(runner.run()))
    thread.start()
    wait_for(lambda: pids.exists() and pids.read_text().strip() != "", 30, "the task to start")
    grandchild = int(pids.read_text())
    control.request_stop()  # as Ctrl-C does
    thread.join(30)
    assert not thread.is_alive() and results
    statuses = {a.step: a.status for a in history.attempts_for_run(results[0].run_id)}
    assert statuses == {"long": "cancelled", "after": "cancelled"}
    wait_for(lambda: not live(grandchild), 5, "the grandchild to be gone")


def test_a_kill_before_the_task_starts_keeps_it_from_starting(
    cluster_address: str, tmp_path: Path
) -> None:
    from planner.clock import SYSTEM_CLOCK
    from planner.execution.dask.executor import DaskExecutor
    from planner.execution.process import Launch

    executor = DaskExecutor(cluster_address, worker_wait_s=30)
    executor.open(SYSTEM_CLOCK)
    try:
        marks = tmp_path / "ran"
        env = dict(os.environ)
        busy = [
            executor.start(Launch(("sleep", "2"), env, tmp_path / f"busy{i}.log")) for i in range(2)
        ]  # both slots taken: the next task waits on the scheduler
        waiting = executor.start(Launch(("touch", str(marks)), env, tmp_path / "w.log"))
        executor.request_kill(waiting, 0.0)
        done = executor.wait(waiting, None, 1.0)
        assert done.info.cancelled and not done.info.lost
        for task in busy:
            assert executor.wait(task, None, 1.0).info.exit_code == 0
        time.sleep(0.5)
        assert not marks.exists()  # it never ran
    finally:
        executor.close()


def test_no_scheduler_is_a_one_line_error() -> None:
    need_dask()
    from planner.execution.dask.executor import DaskExecutor

    executor = DaskExecutor("tcp://127.0.0.1:9", connect_timeout=0.5)
    with pytest.raises(ClusterError) as caught:
        executor.connect()
    assert caught.value.where == "tcp://127.0.0.1:9"
    assert "cannot reach the Dask scheduler" in caught.value.what
    assert "\n" not in caught.value.what


def test_a_cluster_without_workers_is_a_one_line_error() -> None:
    need_dask()
    from distributed import LocalCluster

    from planner.execution.dask.executor import DaskExecutor

    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster:
        executor = DaskExecutor(cluster.scheduler_address, worker_wait_s=0.5)
        with pytest.raises(ClusterError, match=r"no Dask worker joined within 0\.5s"):
            executor.connect()


def test_the_cluster_is_the_machine_of_the_plan(cluster_address: str) -> None:
    from planner.execution.dask.executor import DaskExecutor
    from planner.service.machine import DaskMachine

    executor = DaskExecutor(cluster_address, worker_wait_s=30)
    try:
        state = DaskMachine(executor).read()
    finally:
        executor.close()
    assert state.cpu_count == 3  # two slots, plus the core `auto` keeps for the runner
    assert state.free_memory_mb is not None and state.free_memory_mb > 0


def test_auto_never_plans_more_tasks_at_once_than_the_cluster_has_slots(
    cluster_address: str, make_pipeline: Callable[..., Pipeline], history: HistoryStore
) -> None:
    """Tasks that barely use a CPU make ``auto`` large; on a cluster of 2 slots the plan
    (and so its predictions and the run) stays at 2, and its rule says why."""
    from planner.config.models import Executor
    from planner.execution import RunRequest as Request
    from planner.service import Instance
    from planner.service.running import prepare_run

    pipeline = make_pipeline(
        accounts=[f"a{i}" for i in range(8)],
        steps=[{"id": "nap", "per_account": True, "command": ["sleep", "0.3"]}],
    )
    on_cluster = Executor(kind="dask", address=cluster_address, worker_wait=30)
    instance = Instance(history, Path(history.url.split("///")[1]).parent / "models")
    for run in range(2):
        session = prepare_run(instance, pipeline, Request(), executor=on_cluster)
        assert session.plan.concurrency == 2 and session.directives.concurrency == 2
        assert "at most 2 tasks can run at once" in session.plan.concurrency_rule
        if run:  # the CPU share is known now: the CPU alone would allow many more
            share = session.plan.cpu_per_task
            assert share is not None and 1 / share > 2, session.plan.concurrency_rule
        result = session.execute().result
        assert result.status == "succeeded" and result.concurrency == 2
