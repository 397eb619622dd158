"""Real processes that open one history store at once and ask for the same lease.

Usage: python lease_worker.py URL DIR N [lease|write]

Imports planner once, then forks N children (before any database connection exists).
Each child writes DIR/ready-<i>, waits until DIR/go exists, opens the store (which may
create the database), asks for the lease of pipeline ``race``, prints one JSON line
{"pid", "acquired", "holder"}, and stays alive (holding what it got) until DIR/done
exists, so that no winner dies and lets another take its lease over.
In ``write`` mode each child instead writes 50 attempts (start + finish, as a runner
does) and prints {"pid", "written"}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from planner.history import AttemptOutcome, AttemptStart, HistoryStore, LeaseOwner

WRITES = 50


def wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(str(path))
        time.sleep(0.001)


def child(url: str, folder: Path, index: int, mode: str) -> None:
    (folder / f"ready-{index}").write_text("ready")
    wait_for(folder / "go")
    store = HistoryStore(url)
    if mode == "write":
        try:
            for i in range(WRITES):
                now = datetime.now(UTC)
                start = AttemptStart(f"run-{index}", "race", "1", f"a{i}", 1, 1.0, {}, 1, 1,
                                     "h", now, pid=os.getpid(), pgid=os.getpid())  # fmt: skip
                attempt_id = store.start_attempt(start)
                store.finish_attempt(attempt_id, AttemptOutcome("succeeded", now, 0.0, 0))
        finally:
            store.close()
        os.write(1, (json.dumps({"pid": os.getpid(), "written": WRITES}) + "\n").encode())
        wait_for(folder / "done")
        return
    try:
        owner = LeaseOwner.here(run_id=f"run-{os.getpid()}")
        result = store.acquire_lease("race", owner, 600, datetime.now(UTC))
    finally:
        store.close()
    line = json.dumps({"pid": os.getpid(), "acquired": result.acquired,
                       "holder": result.holder.owner_id,
                       "previous_run": result.previous_run_id})  # fmt: skip
    os.write(1, (line + "\n").encode())
    wait_for(folder / "done")


def main() -> int:
    url, folder, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "lease"
    pids = []
    for index in range(n):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child(url, folder, index, mode)
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
