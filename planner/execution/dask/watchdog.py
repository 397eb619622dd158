"""Kill the process groups of a Dask worker's tasks once the worker is gone.

Started by :mod:`planner.execution.dask.worker` once per worker process, as
``python watchdog.py WORKER_PID`` (a file path, not ``-m``: it imports nothing of
planner, so it starts fast and does not depend on the worker's state). It runs in its
own session, so a signal to the worker's process group does not reach it first. It
polls its parent pid: when the worker dies (SIGKILL included: no teardown of the worker
runs then) it is re-parented, and it kills every process group holding a process whose
environment says ``PLANNER_DASK_WORKER=WORKER_PID`` (TERM, 1 s, KILL), twice over a
second to catch a task spawned at the moment of death, then exits.

Polling rather than ``PR_SET_PDEATHSIG``: the kernel sends that signal when the *thread*
that forked the child ends, and a worker's task threads may end while the worker lives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

WORKER_ENV = "PLANNER_DASK_WORKER"
_POLL_S = 0.2


def _groups_of(worker: int) -> set[int]:
    """Process groups with a live process started for ``worker`` (its environment)."""
    wanted = f"{WORKER_ENV}={worker}".encode()
    groups: set[int] = set()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if wanted not in fh.read().split(b"\0"):
                    continue
            groups.add(os.getpgid(int(entry)))
        except OSError:
            continue
    return groups


def _signal(groups: set[int], sig: int) -> None:
    for pgid in groups:
        if pgid > 1 and pgid != os.getpgrp():
            with contextlib.suppress(OSError):
                os.killpg(pgid, sig)


def reap(worker: int, grace: float = 1.0) -> int:
    """Kill the task groups of ``worker`` (TERM, ``grace``, KILL); returns how many."""
    groups = _groups_of(worker)
    _signal(groups, signal.SIGTERM)
    end = time.monotonic() + grace
    while groups and time.monotonic() < end and _groups_of(worker):
        time.sleep(0.05)
    _signal(groups | _groups_of(worker), signal.SIGKILL)
    return len(groups)


def main(argv: list[str]) -> int:
    worker = int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.getppid() == worker:
        time.sleep(_POLL_S)
    for _ in range(2):
        reap(worker)
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
