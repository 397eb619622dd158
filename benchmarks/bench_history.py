"""History write throughput: attempt rows per second (start + finish pairs) on SQLite.

Usage: python benchmarks/bench_history.py [--attempts N] [--bulk N] [--frame N] [--json]

Measures, in one run and on fresh files in a temporary folder:

- ``store``: ``HistoryStore.start_attempt`` + ``finish_attempt`` per attempt, as the runner
  writes them (two committed transactions per attempt, WAL, synchronous=NORMAL);
- ``bare_tx``: bare ``sqlite3`` doing the same two commits per attempt (same settings,
  same table and indexes): the cost of the database itself;
- ``bare_executemany``: bare ``sqlite3`` inserting every row with one ``executemany`` and
  updating them with one more, in one transaction: the ceiling;
- ``bulk_import``: ``HistoryStore.import_attempts`` rows per second;
- ``frame``: ``attempts_frame`` rows per second over the imported rows.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from planner.history import AttemptOutcome, AttemptStart, HistoryStore
from planner.history.schema import attempts, metadata

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def start(i: int) -> AttemptStart:
    return AttemptStart(
        run_id="bench", pipeline="bench", step=str(i % 5), account=f"acct-{i % 40}", attempt=1,
        quantity=float(i % 100), params={"region": "eu"}, n_accounts=40, concurrency=4,
        host="bench-host", started_at=T0 + timedelta(seconds=i), pid=1000 + i, pgid=1000 + i,
        load_avg=0.5, free_mem_mb=1024.0, cpu_count=2,
    )  # fmt: skip


def outcome(i: int) -> AttemptOutcome:
    return AttemptOutcome(
        status="succeeded", finished_at=T0 + timedelta(seconds=i + 1), duration_s=1.0,
        exit_code=0, stderr_tail="", peak_rss_mb=12.5, cpu_s=0.5,
    )  # fmt: skip


def bench_store(folder: Path, n: int) -> float:
    store = HistoryStore(f"sqlite:///{folder / 'store.db'}")
    try:
        began = time.perf_counter()
        for i in range(n):
            attempt_id = store.start_attempt(start(i))
            store.finish_attempt(attempt_id, outcome(i))
        return time.perf_counter() - began
    finally:
        store.close()


def _bare(folder: Path, name: str) -> sqlite3.Connection:
    """A bare sqlite3 connection on a new file with the same table, indexes and settings."""
    from sqlalchemy import create_engine

    path = folder / name
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine, tables=[attempts])
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


_INSERT = (
    "INSERT INTO attempts (run_id, pipeline, step, account, attempt, quantity, params,"
    " n_accounts, concurrency, host, started_at, status, pid, pgid, load_avg, free_mem_mb,"
    " cpu_count, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?,"
    " 'planner')"
)
_UPDATE = (
    "UPDATE attempts SET status = ?, finished_at = ?, duration_s = ?, exit_code = ?,"
    " stderr_tail = ?, peak_rss_mb = ?, cpu_s = ? WHERE attempt_id = ?"
)


def _start_tuple(i: int) -> tuple[Any, ...]:
    s = start(i)
    return (s.run_id, s.pipeline, s.step, s.account, s.attempt, s.quantity,
            json.dumps(dict(s.params), sort_keys=True), s.n_accounts, s.concurrency, s.host,
            _text(s.started_at), s.pid, s.pgid, s.load_avg, s.free_mem_mb, s.cpu_count)  # fmt: skip


def _end_tuple(i: int, attempt_id: int) -> tuple[Any, ...]:
    o = outcome(i)
    return (o.status, _text(o.finished_at), o.duration_s, o.exit_code, o.stderr_tail,
            o.peak_rss_mb, o.cpu_s, attempt_id)  # fmt: skip


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def bench_bare_tx(folder: Path, n: int) -> float:
    conn = _bare(folder, "bare_tx.db")
    try:
        began = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            attempt_id = conn.execute(_INSERT, _start_tuple(i)).lastrowid
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_UPDATE, _end_tuple(i, int(attempt_id or 0)))
            conn.execute("COMMIT")
        return time.perf_counter() - began
    finally:
        conn.close()


def bench_bare_executemany(folder: Path, n: int) -> float:
    conn = _bare(folder, "bare_many.db")
    try:
        began = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT, [_start_tuple(i) for i in range(n)])
        conn.executemany(_UPDATE, [_end_tuple(i, i + 1) for i in range(n)])
        conn.execute("COMMIT")
        return time.perf_counter() - began
    finally:
        conn.close()


def bench_bulk_and_frame(folder: Path, n: int) -> tuple[float, float]:
    store = HistoryStore(f"sqlite:///{folder / 'bulk.db'}")
    rows = (
        {"pipeline": "bench", "step": "job", "source_key": str(i), "account": f"u{i % 100}",
         "started_at": T0 + timedelta(seconds=i), "duration_s": float(i % 600),
         "status": "succeeded", "quantity": float(i % 64), "exit_code": 0, "host": "kth",
         "params": {"queue": f"q{i % 3}"}}
        for i in range(n)
    )  # fmt: skip
    try:
        began = time.perf_counter()
        result = store.import_attempts(rows, "bench:rows")
        bulk = time.perf_counter() - began
        assert result.inserted == n
        import pandas  # noqa: F401  (import time is not the reader's cost)

        began = time.perf_counter()
        frame = store.attempts_frame("bench")
        read = time.perf_counter() - began
        assert len(frame) == n
        return bulk, read
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=2000, help="start+finish pairs")
    parser.add_argument("--bulk", type=int, default=122_000, help="rows to bulk-import")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n = args.attempts
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        folder = Path(tmp)
        store_s = bench_store(folder, n)
        bare_tx_s = bench_bare_tx(folder, n)
        bare_many_s = bench_bare_executemany(folder, n)
        bulk_s, frame_s = bench_bulk_and_frame(folder, args.bulk)
    figures = {
        "attempts": n,
        "store_rows_per_s": round(n / store_s),
        "bare_tx_rows_per_s": round(n / bare_tx_s),
        "bare_executemany_rows_per_s": round(n / bare_many_s),
        "store_vs_bare_tx": round(store_s / bare_tx_s, 2),
        "store_vs_bare_executemany": round(store_s / bare_many_s, 1),
        "bulk_rows": args.bulk,
        "bulk_import_rows_per_s": round(args.bulk / bulk_s),
        "bulk_import_s": round(bulk_s, 2),
        "frame_rows_per_s": round(args.bulk / frame_s),
        "frame_s": round(frame_s, 2),
    }
    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"history write throughput, SQLite, {n} attempts (start + finish each):")
        print(f"  HistoryStore         {figures['store_rows_per_s']:>8} attempt rows/s")
        print(f"  bare sqlite3, 2 tx   {figures['bare_tx_rows_per_s']:>8} rows/s "
              f"(store takes {figures['store_vs_bare_tx']}x its time)")  # fmt: skip
        print(f"  bare executemany     {figures['bare_executemany_rows_per_s']:>8} rows/s "
              f"(store takes {figures['store_vs_bare_executemany']}x its time)")  # fmt: skip
        print(f"bulk import of {args.bulk} rows: {figures['bulk_import_s']} s "
              f"({figures['bulk_import_rows_per_s']} rows/s)")  # fmt: skip
        print(f"attempts_frame of {args.bulk} rows: {figures['frame_s']} s "
              f"({figures['frame_rows_per_s']} rows/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
