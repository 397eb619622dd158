"""Real processes that open one history store at once and ask for the same lease.

Usage: python lease_worker.py URL DIR N

Imports planner once, then forks N children (before any database connection exists).
Each child writes DIR/ready-<i>, waits until DIR/go exists, opens the store (which may
create the database), asks for the lease of pipeline ``race``, prints one JSON line
{"pid", "acquired", "holder"}, and stays alive (holding what it got) until DIR/done
exists, so that no winner dies and lets another take its lease over.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from planner.history import HistoryStore, LeaseOwner


def wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(str(path))
        time.sleep(0.001)


def child(url: str, folder: Path, index: int) -> None:
    (folder / f"ready-{index}").write_text("ready")
    wait_for(folder / "go")
    store = HistoryStore(url)
    try:
        owner = LeaseOwner.here(run_id=f"run-{os.getpid()}")
        result = store.acquire_lease("race", owner, 600, datetime.now(UTC))
    finally:
        store.close()
    line = json.dumps({"pid": os.getpid(), "acquired": result.acquired,
                       "holder": result.holder.owner_id})  # fmt: skip
    os.write(1, (line + "\n").encode())
    wait_for(folder / "done")


def main() -> int:
    url, folder, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    pids = []
    for index in range(n):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child(url, folder, index)
            except BaseException as exc:
                # one line on stdout all the same, so the test never waits for it
                os.write(1, (json.dumps({"pid": os.getpid(), "error": repr(exc)}) + "\n").encode())
                code = 1
            os._exit(code)
        pids.append(pid)
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
