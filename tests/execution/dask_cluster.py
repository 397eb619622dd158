"""Dask clusters for the Dask executor's tests: a ``LocalCluster`` with worker processes,
or a scheduler and workers started as separate processes on loopback (``dask scheduler``,
``dask worker``). Every process started here is killed at teardown.

Without dask the tests skip, saying why; with ``CI=true`` they fail (it is a dependency of
``.ci/run``'s install).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
DASK_MISSING = "dask/distributed not installed: pip install -e '.[dask]'"


def need_dask() -> None:
    """Skip (fail in CI) when dask is not installed."""
    found = all(importlib.util.find_spec(m) is not None for m in ("dask", "distributed"))
    need(found, DASK_MISSING)


def subprocess_env() -> dict[str, str]:
    """The environment of the processes started here: planner importable from this tree."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


@dataclass
class ProcessCluster:
    """A scheduler and workers as separate processes (``dask scheduler``/``dask worker``)."""

    folder: Path
    scheduler: subprocess.Popen[bytes] | None = None
    address: str = ""
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _dask(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.folder / log, "wb") as out:  # the child keeps its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=subprocess_env(),
                cwd=self.folder,
                start_new_session=True,
            )

    def start_scheduler(self, timeout: float = 30.0) -> str:
        self.scheduler = self._dask(
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0"],
            "scheduler.log",
        )
        deadline = time.monotonic() + timeout
        log = self.folder / "scheduler.log"
        while time.monotonic() < deadline:
            found = re.search(r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                self.address = found.group(1)
                return self.address
            assert self.scheduler.poll() is None, log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"the scheduler did not start: {log.read_text()}")

    def start_worker(self) -> subprocess.Popen[bytes]:
        n = len(self.workers)
        worker = self._dask(
            [
                "worker",
                self.address,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--local-directory",
                str(self.folder / f"w{n}"),
                "--death-timeout",
                "5",
            ],
            f"worker{n}.log",
        )
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            joined = sum(
                "Registered to" in (self.folder / f"worker{i}.log").read_text()
                for i in range(len(self.workers))
            )
            if joined >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"{n} worker(s) did not join")

    def kill_all(self) -> None:
        for process in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def process_cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    """A scheduler and two one-thread workers as separate processes on loopback."""
    need_dask()
    folder = tmp_path / "cluster"
    folder.mkdir()
    cluster = ProcessCluster(folder)
    try:
        cluster.start_scheduler()
        cluster.start_worker()
        cluster.start_worker()
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.kill_all()
