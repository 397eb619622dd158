"""Runner benchmark: planner against a bare ``subprocess.run`` thread pool, same commands.

    python benchmarks/bench_runner.py [--tasks 2000] [--concurrency 4] [--json]
    python benchmarks/bench_runner.py --quick      # 400 tasks: a check in about 20 s

Measured in one run, on the same machine and commands:
1. wall time of N tasks of ``sleep 0.05`` at concurrency C, planner / bare (target <= 1.15x);
2. fixed cost per task: N tasks of ``true`` one at a time, ms per task, and planner's
   extra cost over the bare loop;
3. history write throughput: attempt rows written per second the way the runner writes
   them (one insert at start, one update at the end), and in a bulk import.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from planner.config.loader import parse_pipeline  # noqa: E402
from planner.execution import Runner, RunRequest  # noqa: E402
from planner.history import AttemptOutcome, AttemptStart, HistoryStore  # noqa: E402


def bare(command: list[str], tasks: int, concurrency: int) -> float:
    """Seconds for a thread pool of ``concurrency`` to ``subprocess.run`` the command N times."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: subprocess.run(command, check=False), range(tasks)))
    return time.monotonic() - t0


def planner_run(command: list[str], tasks: int, concurrency: int, folder: Path) -> float:
    """Seconds for planner to run the command as N per-account tasks at ``concurrency``."""
    raw = {
        "name": "bench",
        "state_dir": str(folder),
        "accounts": [f"a{i:05d}" for i in range(tasks)],
        "concurrency": {"max": concurrency},
        "steps": [{"id": "task", "command": command, "per_account": True}],
    }
    pipeline, issues = parse_pipeline(raw, base_dir=folder)
    assert pipeline is not None, issues
    with HistoryStore.for_pipeline(pipeline) as store:
        t0 = time.monotonic()
        result = Runner(pipeline, store, RunRequest(concurrency=concurrency)).run()
        elapsed = time.monotonic() - t0
        assert result.counts == {"succeeded": tasks}, result.counts
    return elapsed


def write_throughput(folder: Path, rows: int) -> tuple[float, float]:
    """Attempt rows per second: start + finish per row, and a bulk import."""
    now = datetime.now(UTC)
    with HistoryStore(f"sqlite:///{folder / 'writes.db'}") as store:
        store.create_run(run_id="w", pipeline="bench", started_at=now)
        t0 = time.monotonic()
        for i in range(rows):
            attempt_id = store.start_attempt(
                AttemptStart(
                    run_id="w",
                    pipeline="bench",
                    step="s",
                    account=f"a{i}",
                    attempt=1,
                    quantity=1.0,
                    params={},
                    n_accounts=rows,
                    concurrency=4,
                    host="h",
                    started_at=now,
                    pid=1,
                    pgid=1,
                    load_avg=0.1,
                    free_mem_mb=1.0,
                    cpu_count=2,
                )
            )
            store.finish_attempt(
                attempt_id,
                AttemptOutcome(
                    status="succeeded",
                    finished_at=now,
                    duration_s=0.1,
                    exit_code=0,
                    peak_rss_mb=1.0,
                    cpu_s=0.01,
                ),
            )
        runner_style = rows / (time.monotonic() - t0)
        bulk_rows = [
            {
                "run_id": f"b{i // 100}",
                "pipeline": "bench",
                "step": "s",
                "account": f"a{i}",
                "attempt": 1,
                "status": "succeeded",
                "started_at": now + timedelta(seconds=i),
                "finished_at": now + timedelta(seconds=i + 1),
                "duration_s": 1.0,
                "source_key": str(i),
            }
            for i in range(rows * 10)
        ]
        t0 = time.monotonic()
        store.import_attempts(bulk_rows, source="bench")
        bulk = len(bulk_rows) / (time.monotonic() - t0)
    return runner_style, bulk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=None, help="tasks per measure (2000)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--quick", action="store_true", help="400 tasks unless --tasks says otherwise"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n, c = args.tasks or (400 if args.quick else 2000), args.concurrency
    folder = Path(tempfile.mkdtemp(prefix="bench-runner-"))
    try:
        sleep_cmd = ["sleep", "0.05"]
        bare_sleep = bare(sleep_cmd, n, c)
        planner_sleep = planner_run(sleep_cmd, n, c, folder / "sleep")
        true_cmd = [shutil.which("true") or "true"]
        bare_true = bare(true_cmd, n, 1)
        planner_true = planner_run(true_cmd, n, 1, folder / "true")
        per_row, bulk = write_throughput(folder, n)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    figures = {
        "tasks": n,
        "concurrency": c,
        "sleep_0.05": {
            "ideal_s": round(n * 0.05 / c, 2),
            "bare_s": round(bare_sleep, 2),
            "planner_s": round(planner_sleep, 2),
            "ratio": round(planner_sleep / bare_sleep, 3),
        },
        "true_serial": {
            "bare_ms_per_task": round(bare_true / n * 1000, 2),
            "planner_ms_per_task": round(planner_true / n * 1000, 2),
            "planner_extra_ms_per_task": round((planner_true - bare_true) / n * 1000, 2),
        },
        "history_writes": {
            "attempt_rows_per_s_runner_style": round(per_row),
            "attempt_rows_per_s_bulk_import": round(bulk),
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    s, t, w = figures["sleep_0.05"], figures["true_serial"], figures["history_writes"]
    print(f"{n} x sleep 0.05 at concurrency {c} (ideal {s['ideal_s']}s):")
    print(f"  bare thread pool {s['bare_s']}s, planner {s['planner_s']}s, ratio {s['ratio']}x")
    print(f"{n} x true, one at a time:")
    print(f"  bare {t['bare_ms_per_task']} ms/task, planner {t['planner_ms_per_task']} ms/task "
          f"(+{t['planner_extra_ms_per_task']} ms fixed cost per task)")  # fmt: skip
    print("history writes (SQLite, WAL):")
    print(f"  {w['attempt_rows_per_s_runner_style']} attempt rows/s written as the runner does "
          f"(insert at start + update at end), {w['attempt_rows_per_s_bulk_import']} rows/s "
          "in a bulk import")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
