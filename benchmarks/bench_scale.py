"""Scale-out benchmark: SQLite vs PostgreSQL histories, local processes vs Dask workers.

    python benchmarks/bench_scale.py [--tasks 2000] [--rows 2000] [--concurrency 2] [--json]
    python benchmarks/bench_scale.py --quick      # 300 tasks and rows: a first look

Measured in one run, on this machine (the baseline of each ratio is the first line):

1. history write throughput: attempt rows per second written as the runner writes them
   (``start_attempt`` + ``finish_attempt``: two committed transactions per row), on a
   SQLite file (WAL) and on a PostgreSQL database (and on one with
   ``synchronous_commit = off``: a commit does not wait for its WAL flush);
2. a run of N trivial tasks (``true``, one per account) at the same concurrency: local
   processes with a SQLite history, local processes with a PostgreSQL history, and a
   Dask ``LocalCluster`` of 2 worker processes x 1 thread with a SQLite history (the
   concurrency is then the cluster's 2 slots). Wall time, tasks per second, ratio.

PostgreSQL is a private throw-away cluster started with ``initdb``/``pg_ctl`` as the
tests do (``tests/pg.py``), with its durable defaults (fsync and synchronous commit on,
unlike the tests' cluster), over TCP on 127.0.0.1. It is skipped, saying why, when the
binaries or psycopg are missing; Dask likewise when dask is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from planner.config.loader import parse_pipeline  # noqa: E402
from planner.execution import Runner, RunRequest  # noqa: E402
from planner.history import AttemptOutcome, AttemptStart, HistoryStore  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@contextmanager
def postgres() -> Iterator[Any]:
    """A private PostgreSQL cluster (durable settings); yields it, or a reason (str)."""
    try:
        from tests.pg import PgCluster, _run, _wait_ready, find_pg_bin
    except ImportError as exc:  # pytest or psycopg missing
        yield f"cannot use tests/pg.py: {exc}"
        return
    bin_dir = find_pg_bin()
    if bin_dir is None:
        yield "PostgreSQL binaries (initdb, pg_ctl) not found"
        return
    if importlib.util.find_spec("psycopg") is None:
        yield "psycopg is not installed"
        return

    class Durable(PgCluster):
        def start(self) -> None:
            options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options]
            _run(
                _as_postgres([*ctl, "-l", str(self.root / "server.log"), "-w", "start"]),
                "pg_ctl start",
            )
            self.running = True
            _wait_ready(self.admin)

    from tests.pg import _as_postgres

    cluster = Durable(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def psycopg_connect(conninfo: str) -> Any:
    import psycopg

    return psycopg.connect(conninfo, autocommit=True)


def write_rows(url: str, rows: int) -> float:
    """Attempt rows per second, start + finish per row, as the runner writes them."""
    with HistoryStore(url) as store:
        store.create_run(run_id="w", pipeline="bench", started_at=T0)
        t0 = time.monotonic()
        for i in range(rows):
            attempt_id = store.start_attempt(
                AttemptStart(
                    run_id="w", pipeline="bench", step="s", account=f"a{i}", attempt=1,
                    quantity=1.0, params={}, n_accounts=rows, concurrency=4, host="h",
                    started_at=T0 + timedelta(seconds=i), pid=1, pgid=1, load_avg=0.1,
                    free_mem_mb=1.0, cpu_count=2,
                )
            )  # fmt: skip
            store.finish_attempt(
                attempt_id,
                AttemptOutcome(
                    status="succeeded", finished_at=T0 + timedelta(seconds=i + 1),
                    duration_s=1.0, exit_code=0, peak_rss_mb=1.0, cpu_s=0.01,
                ),
            )  # fmt: skip
        return rows / (time.monotonic() - t0)


def run_tasks(url: str, tasks: int, concurrency: int, folder: Path, dask: str | None) -> float:
    """Seconds for a run of ``tasks`` x ``true`` (``dask``: the scheduler's address)."""
    raw = {
        "name": "scale",
        "state_dir": str(folder),
        "accounts": [f"a{i:05d}" for i in range(tasks)],
        "steps": [{"id": "task", "command": [shutil.which("true") or "true"], "per_account": True}],
    }
    pipeline, issues = parse_pipeline(raw, base_dir=folder)
    assert pipeline is not None, issues
    executor = None
    if dask is not None:
        from planner.execution.dask.executor import DaskExecutor

        executor = DaskExecutor(dask, worker_wait_s=60)
        executor.connect()  # (connecting is not part of the run's time)
    with HistoryStore(url) as store:
        t0 = time.monotonic()
        runner = Runner(pipeline, store, RunRequest(concurrency=concurrency), executor=executor)
        result = runner.run()
        elapsed = time.monotonic() - t0
    assert result.counts == {"succeeded": tasks}, result.counts
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=None, help="tasks per run (2000)")
    parser.add_argument("--rows", type=int, default=None, help="attempt rows written (2000)")
    parser.add_argument("--concurrency", type=int, default=2, help="tasks at once (2)")
    parser.add_argument("--quick", action="store_true", help="300 tasks and rows")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.tasks or (300 if args.quick else 2000)
    rows = args.rows or (300 if args.quick else 2000)
    c = args.concurrency
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    writes: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    notes: list[str] = []
    try:
        sqlite = lambda name: f"sqlite:///{folder / name}"  # noqa: E731
        writes["sqlite"] = write_rows(sqlite("writes.db"), rows)
        runs["local+sqlite"] = run_tasks(sqlite("local.db"), n, c, folder / "local", None)
        with postgres() as pg:
            if isinstance(pg, str):
                notes.append(f"PostgreSQL skipped: {pg}")
            else:
                writes["postgresql"] = write_rows(pg.create_database("writes"), rows)
                lazy = pg.create_database("writes_async")
                with psycopg_connect(pg.admin) as conn:
                    conn.execute("ALTER DATABASE writes_async SET synchronous_commit = off")
                writes["postgresql_async"] = write_rows(lazy, rows)
                url = pg.create_database("runs")
                runs["local+postgresql"] = run_tasks(url, n, c, folder / "pg", None)
        if importlib.util.find_spec("distributed") is None:
            notes.append("Dask skipped: pip install -e '.[dask]'")
        else:
            from distributed import LocalCluster

            with LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster:
                address = cluster.scheduler_address
                runs["dask(2x1)+sqlite"] = run_tasks(sqlite("dask.db"), n, 2, folder / "d", address)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base_w, base_r = writes["sqlite"], runs["local+sqlite"]
    figures = {
        "rows": rows,
        "tasks": n,
        "concurrency": c,
        "history_writes_rows_per_s": {
            k: {"rows_per_s": round(v), "ratio": round(v / base_w, 3)} for k, v in writes.items()
        },
        "run_of_true": {
            k: {
                "seconds": round(v, 2),
                "tasks_per_s": round(n / v, 1),
                "ratio": round(v / base_r, 3),
            }
            for k, v in runs.items()
        },
        "notes": notes,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"history writes, {rows} attempt rows (start + finish each), ratio to SQLite:")
    for name, w in figures["history_writes_rows_per_s"].items():
        print(f"  {name:<16} {w['rows_per_s']:>7} rows/s   {w['ratio']:.2f}x")
    print(
        f"a run of {n} x true at concurrency {c} (Dask: its 2 slots), time ratio to local+sqlite:"
    )
    for name, r in figures["run_of_true"].items():
        print(
            f"  {name:<18} {r['seconds']:>7.2f} s  {r['tasks_per_s']:>7} tasks/s  {r['ratio']:.2f}x"
        )
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
