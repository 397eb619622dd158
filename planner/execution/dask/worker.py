"""The worker's side of the Dask executor: one task as a process tree, run once.

:func:`run_task` is the function the client submits (one Dask task per attempt). In the
worker process it:

1. claims the task's token on the scheduler (:mod:`.claims`); a refused claim (a silent
   re-run after its first worker died, or a task killed before it started) returns
   ``{"refused": True}`` and starts nothing;
2. spawns the command with :func:`~planner.execution.process.spawn` (its own session,
   output to a log file in the worker's temp folder), the environment marked
   ``PLANNER_DASK_WORKER=<worker pid>`` for the watchdog;
3. samples its tree with a :class:`~planner.execution.sampling.TreeSampler` (one per
   worker process) and waits for it; a kill request (:func:`kill_task`, sent by the
   client through ``Client.run``: planner's own channel, not ``future.cancel()``) kills
   the tree: TERM, grace, KILL;
4. returns the exit, the peak RSS and CPU of the tree, the run time measured here, and
   the last :data:`LOG_CAP` bytes of the log (the log file is then removed).

The first task of a worker process starts the watchdog (``watchdog.py``), which kills
the worker's task groups when the worker dies, SIGKILL included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from planner.errors import ExecutionError
from planner.execution.dask.watchdog import WORKER_ENV
from planner.execution.process import Launch, TaskProcess, spawn
from planner.execution.sampling import TreeSampler, TreeUsage

__all__ = ["LOG_CAP", "kill_task", "run_task"]

#: How much of a task's log comes back to the scheduling host (its end).
LOG_CAP = 64 * 1024


@dataclass
class _Entry:
    process: TaskProcess
    reason: str | None = None  # "timeout" or "cancel" once a kill was asked for


_lock = threading.Lock()
_running: dict[str, _Entry] = {}
_early: dict[str, tuple[str, float]] = {}  # kills that came before their task registered
_helpers: dict[str, Any] = {}


def _claim(token: str) -> bool:
    from distributed import get_worker
    from distributed.utils import sync

    worker = get_worker()
    claimed = sync(worker.loop, worker.scheduler.planner_claim, token=token, worker=worker.address)
    return bool(claimed)


def _sampler(interval: float) -> TreeSampler:
    """The worker process's sampler; the watchdog is started with it."""
    with _lock:
        sampler = _helpers.get("sampler")
        if sampler is None:
            sampler = TreeSampler(interval)
            sampler.start()
            _helpers["sampler"] = sampler
            script = Path(__file__).with_name("watchdog.py")
            _helpers["watchdog"] = subprocess.Popen(
                [sys.executable, str(script), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if k != WORKER_ENV},
            )
        assert isinstance(sampler, TreeSampler)
        return sampler


def _tail(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - LOG_CAP))
            return fh.read()
    except OSError:
        return b""
    finally:
        path.unlink(missing_ok=True)


def run_task(token: str, launch: Launch, sample_interval: float = 0.25) -> dict[str, Any]:
    """Run ``launch`` once on this worker (see the module's docstring); the dict holds
    ``refused``, or ``error`` (it could not start) and ``log``, or the exit figures."""
    if not _claim(token):
        return {"refused": True}
    sampler = _sampler(sample_interval)
    log_path = Path(tempfile.gettempdir()) / "planner-dask" / f"{token}.log"
    env = {**launch.env, WORKER_ENV: str(os.getpid())}
    here = replace(launch, log_path=log_path, env=env)
    started = time.monotonic()
    try:
        process = spawn(here, time.monotonic)
    except ExecutionError as exc:
        return {"error": exc.what, "log": _tail(log_path)}
    sampler.add(process.pid)
    entry = _Entry(process)
    with _lock:
        _running[token] = entry
        early = _early.pop(token, None)
    if early is not None:
        entry.reason = early[0]
        process.request_kill(early[1])
    box: list[TreeUsage] = []
    try:
        info = process.wait(None, 0.0, before_reap=lambda: box.append(sampler.remove(process.pid)))
    finally:
        with _lock:
            _running.pop(token, None)
    usage = box[0] if box else TreeUsage()
    peak_mb, cpu_s = usage.final(info.maxrss_kb, info.cpu_s)
    timed_out = info.cancelled and entry.reason == "timeout"
    return {
        "exit_code": info.exit_code,
        "elapsed_s": max(0.0, info.ended_mono - started),
        "peak_rss_mb": peak_mb,
        "cpu_s": cpu_s,
        "timed_out": timed_out,
        "cancelled": info.cancelled and not timed_out,
        "log": _tail(log_path),
        "pid": process.pid,
    }


def kill_task(token: str, grace: float, reason: str) -> bool:
    """Kill the tree of ``token``'s task if it runs here (TERM, ``grace``, KILL; ``reason``:
    ``timeout`` or ``cancel``); returns whether it runs here. A kill for a task not (yet)
    registered here is kept, so a task between its claim and its spawn is killed too."""
    with _lock:
        entry = _running.get(token)
        if entry is None:
            if len(_early) > 10_000:
                _early.clear()
            _early[token] = (reason, grace)
            return False
        entry.reason = entry.reason or reason
    entry.process.request_kill(grace)
    return True
