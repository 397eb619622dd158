"""History write throughput: attempt rows per second (start + finish pairs) on SQLite.

Usage: python benchmarks/bench_history.py [--attempts N] [--bulk N] [--frame-rounds N]
       [--baseline GIT_REF] [--json]

Measures, in one run and on fresh files in a temporary folder:

- ``store``: ``HistoryStore.start_attempt`` + ``finish_attempt`` per attempt, as the runner
  writes them (two committed transactions per attempt, WAL, synchronous=NORMAL);
- ``bare_tx``: bare ``sqlite3`` doing the same two commits per attempt (same settings,
  same table and indexes): the cost of the database itself;
- ``bare_executemany``: bare ``sqlite3`` inserting every row with one ``executemany`` and
  updating them with one more, in one transaction: the ceiling;
- ``bulk_import``: ``HistoryStore.import_attempts`` rows per second;
- ``frame``: ``attempts_frame`` rows per second over the imported rows (the best of
  ``--frame-rounds`` reads). With ``--baseline REF`` the reader of
  ``planner/history/frames.py`` as it was at git ``REF`` reads the same rows too,
  alternating with the current one, and must return an equal frame: before and after in
  one run, on the same file and the same machine load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
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


def baseline_reader(ref: str, folder: Path) -> ModuleType:
    """``planner/history/frames.py`` as it was at git ``ref``, loaded as a module."""
    repo = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "-C", str(repo), "show", f"{ref}:planner/history/frames.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = folder / "frames_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("frames_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_bulk_and_frame(
    folder: Path, n: int, rounds: int = 1, baseline: ModuleType | None = None
) -> tuple[float, list[float], list[float]]:
    """Bulk-import ``n`` rows; then the frame read times (current, and baseline if given)."""
    import pandas as pd  # import time is not the reader's cost

    store = HistoryStore(f"sqlite:///{folder / 'bulk.db'}")
    rows = (
        {"pipeline": "bench", "step": "job", "source_key": str(i), "account": f"u{i % 100}",
         "started_at": T0 + timedelta(seconds=i), "duration_s": float(i % 600),
         "status": "succeeded", "quantity": float(i % 64), "exit_code": 0, "host": "kth",
         "params": {"queue": f"q{i % 3}"}}
        for i in range(n)
    )  # fmt: skip
    current: list[float] = []
    before: list[float] = []
    try:
        began = time.perf_counter()
        result = store.import_attempts(rows, "bench:rows")
        bulk = time.perf_counter() - began
        assert result.inserted == n
        for _ in range(rounds):
            began = time.perf_counter()
            frame = store.attempts_frame("bench")
            current.append(time.perf_counter() - began)
            assert len(frame) == n
            if baseline is not None:
                with store._engine.connect() as conn:  # what attempts_frame does
                    began = time.perf_counter()
                    old = baseline.read_attempts(conn, pipeline="bench")
                    before.append(time.perf_counter() - began)
                    conn.rollback()
                pd.testing.assert_frame_equal(old, frame)
                del old
            del frame
        return bulk, current, before
    finally:
        store.close()


def bench_bare_fetch(folder: Path) -> float:
    """Bare sqlite3 ``fetchall`` of the frame's columns in its order: the driver's share."""
    from planner.gcpause import paused_gc
    from planner.history import FRAME_COLUMNS

    conn = sqlite3.connect(folder / "bulk.db")
    try:
        with paused_gc():  # as the reader does
            began = time.perf_counter()
            rows = conn.execute(
                f"SELECT {', '.join(FRAME_COLUMNS)} FROM attempts WHERE pipeline = 'bench'"
                " ORDER BY started_at, attempt_id"
            ).fetchall()
            seconds = time.perf_counter() - began
            del rows
        return seconds
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=2000, help="start+finish pairs")
    parser.add_argument("--bulk", type=int, default=122_000, help="rows to bulk-import")
    parser.add_argument(
        "--frame-rounds", type=int, default=1, help="attempts_frame reads (the best counts)"
    )
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF",
        help="also time planner/history/frames.py as of this git ref, alternating",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n = args.attempts
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        folder = Path(tmp)
        store_s = bench_store(folder, n)
        bare_tx_s = bench_bare_tx(folder, n)
        bare_many_s = bench_bare_executemany(folder, n)
        baseline = baseline_reader(args.baseline, folder) if args.baseline else None
        bulk_s, frames, before = bench_bulk_and_frame(
            folder, args.bulk, max(1, args.frame_rounds), baseline
        )
        fetch_s = bench_bare_fetch(folder)
    frame_s = min(frames)
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
        "frame_rounds_s": [round(t, 2) for t in frames],
        "bare_fetchall_s": round(fetch_s, 2),
    }
    if before:
        figures.update(
            baseline=args.baseline,
            baseline_frame_s=round(min(before), 2),
            baseline_rounds_s=[round(t, 2) for t in before],
            frame_speedup=round(min(before) / frame_s, 2),
        )
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
              f"({figures['frame_rows_per_s']} rows/s; "
              f"rounds {figures['frame_rounds_s']})")  # fmt: skip
        print(f"  of which the driver alone (bare sqlite3 fetchall, same columns and order): "
              f"{figures['bare_fetchall_s']} s")  # fmt: skip
        if before:
            print(f"  same rows, reader of {args.baseline}: {figures['baseline_frame_s']} s "
                  f"(rounds {figures['baseline_rounds_s']}): "
                  f"{figures['frame_speedup']}x faster now")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
