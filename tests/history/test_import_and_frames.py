"""Bulk imports (idempotent) and the attempts DataFrame (the contract with learning)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from planner.history import AttemptOutcome, AttemptStart, HistoryStore, empty_attempts_frame

from .conftest import T0

#: docs/ARCHITECTURE.md, "The attempts DataFrame", written out here on purpose.
CONTRACT = {
    "attempt_id": "int64", "run_id": "string", "pipeline": "string", "step": "string",
    "account": "string", "attempt": "int64", "quantity": "float64", "params": "object",
    "n_accounts": "Int64", "concurrency": "Int64", "host": "string",
    "started_at": "datetime64[us, UTC]", "finished_at": "datetime64[us, UTC]",
    "duration_s": "float64", "status": "string", "exit_code": "Int64",
    "error_class": "string", "peak_rss_mb": "float64", "cpu_s": "float64",
    "load_avg": "float64", "free_mem_mb": "float64", "cpu_count": "Int64", "source": "string",
}  # fmt: skip


def job(number: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "pipeline": "kth",
        "step": "job",
        "source_key": str(number),
        "run_id": f"job-{number}",
        "started_at": T0 + timedelta(minutes=number),
        "duration_s": 60.0 * number,
        "status": "succeeded",
        "quantity": float(number),
        "exit_code": 0,
    }
    row.update(extra)
    return row


def test_import_is_idempotent(store: HistoryStore) -> None:
    first = store.import_attempts([job(1), job(2), job(3)], "swf:kth.swf")
    assert (first.inserted, first.duplicates) == (3, 0)
    again = store.import_attempts([job(1), job(2), job(3), job(4), job(4)], "swf:kth.swf")
    assert (again.inserted, again.duplicates) == (1, 4)
    other = store.import_attempts([job(1)], "csv:other.csv")  # another source: not a duplicate
    assert other.inserted == 1
    assert store.count_attempts(source="swf:kth.swf") == 4
    assert store.count_attempts(pipeline="kth") == 5


def test_import_fills_the_end_or_the_duration_and_takes_numpy_values(store: HistoryStore) -> None:
    rows = [
        job(1, exit_code=np.int64(0), quantity=np.float64(7.5), account=float("nan")),
        {"pipeline": "kth", "step": "job", "source_key": "2", "started_at": T0,
         "finished_at": pd.Timestamp(T0 + timedelta(seconds=90)), "params": {"queue": "q1"}},
    ]  # fmt: skip
    assert store.import_attempts(rows, "swf:kth.swf").inserted == 2
    frame = store.attempts_frame("kth").set_index("run_id")
    assert frame.loc["job-1", "finished_at"] == T0 + timedelta(minutes=2)
    assert frame.loc["job-1", "quantity"] == 7.5 and pd.isna(frame.loc["job-1", "account"])
    assert frame.loc["swf:kth.swf:2", "duration_s"] == 90.0
    assert frame.loc["swf:kth.swf:2", "status"] == "unknown"
    assert frame.loc["swf:kth.swf:2", "params"] == {"queue": "q1"}


def test_a_bad_row_stores_nothing(store: HistoryStore) -> None:
    rows = [job(n) for n in range(1, 6000)] + [job(6000, started_at=None)]
    with pytest.raises(ValueError, match=r"row 6000: started_at is required"):
        store.import_attempts(rows, "swf:kth.swf")
    with pytest.raises(ValueError, match="unknown column"):
        store.import_attempts([job(1, env={"SECRET": "x"})], "swf:kth.swf")
    assert store.count_attempts() == 0


def test_frame_has_the_contract_columns_and_dtypes(store: HistoryStore) -> None:
    done = store.start_attempt(
        AttemptStart("r1", "nightly", "1", "a1", 1, 500.0, {"region": "eu"}, 12, 4, "h", T0,
                     pid=1, pgid=1, load_avg=0.25, free_mem_mb=1000.0, cpu_count=2)
    )  # fmt: skip
    store.finish_attempt(
        done, AttemptOutcome("failed", T0 + timedelta(seconds=2.5), 2.5, 75, "network_error",
                             "boom", 55.5, 1.25)
    )  # fmt: skip
    store.start_attempt(
        AttemptStart(
            "r1", "nightly", "21", None, 1, None, {}, 12, 4, "h", T0 + timedelta(seconds=3)
        )
    )
    store.import_attempts([job(1)], "swf:kth.swf")
    frame = store.attempts_frame()
    assert {c: str(t) for c, t in frame.dtypes.items()} == CONTRACT
    assert list(frame.columns) == list(CONTRACT)
    assert list(frame["step"]) == ["1", "21", "job"]  # ordered by start
    first, running = frame.iloc[0], frame.iloc[1]
    assert first["params"] == {"region": "eu"} and first["exit_code"] == 75
    assert first["finished_at"] - first["started_at"] == pd.Timedelta(seconds=2.5)
    assert (first["peak_rss_mb"], first["cpu_s"], first["load_avg"]) == (55.5, 1.25, 0.25)
    assert first["source"] == "planner" and first["error_class"] == "network_error"
    assert pd.isna(running["finished_at"]) and np.isnan(running["duration_s"])
    assert pd.isna(running["account"]) and np.isnan(running["quantity"])
    assert pd.isna(running["exit_code"]) and running["params"] == {}
    assert frame.iloc[2]["source"] == "swf:kth.swf"


def test_frame_filters_by_pipeline_and_time_span(store: HistoryStore) -> None:
    store.import_attempts([job(n) for n in range(10)], "swf:kth.swf")
    store.import_attempts([job(n, pipeline="other") for n in range(10)], "swf:kth.swf")
    assert len(store.attempts_frame()) == 20
    span = store.attempts_frame(
        "kth", since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=6)
    )
    assert list(span["source"].index) == [0, 1, 2]
    assert list(span["quantity"]) == [3.0, 4.0, 5.0]
    local = datetime(2026, 3, 1, 13, 3, tzinfo=ZoneInfo("Europe/Paris"))  # 12:03 UTC
    assert list(store.attempts_frame("kth", since=local)["quantity"])[:1] == [3.0]
    assert list(store.attempts_frame("kth", since=local)["quantity"]) == [
        float(n) for n in range(3, 10)
    ]
    assert store.attempts_frame("none").dtypes.equals(empty_attempts_frame().dtypes)
    assert len(store.attempts_frame("none")) == 0


def test_importing_many_rows_is_fast(store: HistoryStore) -> None:
    import time

    rows = [job(n, account=f"acct-{n % 50}", params={"q": n % 3}) for n in range(20_000)]
    began = time.perf_counter()
    result = store.import_attempts(rows, "swf:kth.swf")
    elapsed = time.perf_counter() - began
    assert result.inserted == 20_000
    assert elapsed < 10, f"20,000 rows took {elapsed:.1f} s"
    began = time.perf_counter()
    frame = store.attempts_frame("kth")
    assert len(frame) == 20_000 and frame["started_at"].is_monotonic_increasing
    assert time.perf_counter() - began < 5
    assert frame["started_at"].dt.tz == UTC or str(frame["started_at"].dt.tz) == "UTC"
