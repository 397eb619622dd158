"""The store contract, run against every backend (SQLite file and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from planner.errors import StoreError
from planner.history import (
    STDERR_TAIL_BYTES,
    AttemptOutcome,
    AttemptStart,
    AttemptStatus,
    HistoryStore,
    RunStatus,
)
from planner.history.records import task_counts

from .conftest import T0


def start(
    run_id: str = "r1", step: str = "1", account: str | None = "a1", **kw: object
) -> AttemptStart:
    fields: dict[str, object] = {
        "run_id": run_id,
        "pipeline": "nightly",
        "step": step,
        "account": account,
        "attempt": 1,
        "quantity": 500.0,
        "params": {"region": "eu", "pages": 3, "full": True},
        "n_accounts": 12,
        "concurrency": 4,
        "host": "host-a",
        "started_at": T0,
        "pid": 4242,
        "pgid": 4242,
        "load_avg": 0.5,
        "free_mem_mb": 2048.0,
        "cpu_count": 2,
    }
    fields.update(kw)
    return AttemptStart(**fields)  # type: ignore[arg-type]


def test_reopening_keeps_the_data(store: HistoryStore, store_url: str) -> None:
    store.create_run(run_id="r1", pipeline="nightly", started_at=T0)
    again = HistoryStore(store_url)
    try:
        run = again.get_run("r1")
        assert run is not None and run.status == "running"
    finally:
        again.close()


def test_times_come_back_aware_utc(store: HistoryStore) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=paris)  # 12:00:00.123456 UTC
    naive = datetime(2026, 3, 1, 13, 0)  # taken to be UTC
    store.create_run(run_id="r1", pipeline="nightly", started_at=local)
    first = store.start_attempt(start(started_at=local))
    store.finish_attempt(first, AttemptOutcome("succeeded", naive, 3599.876544))
    run = store.get_run("r1")
    assert run is not None
    assert run.started_at == local and run.started_at.utcoffset() == timedelta(0)
    (record,) = store.attempts_for_run("r1")
    assert record.started_at.tzinfo is not None and record.started_at.utcoffset() == timedelta(0)
    assert record.started_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert record.finished_at == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    frame = store.attempts_frame()
    assert frame.loc[0, "started_at"] == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_runs_lifecycle_and_listing(store: HistoryStore) -> None:
    store.create_run(
        run_id="r1", pipeline="nightly", started_at=T0, host="h", pid=10, concurrency=4,
        n_accounts=12, selection={"steps": ["1", "2"], "accounts": ["a1"]}, owner_id="o1",
    )  # fmt: skip
    store.create_run(
        run_id="r2", pipeline="nightly", started_at=T0 + timedelta(hours=1), resumed_from="r1"
    )
    store.create_run(run_id="x1", pipeline="other", started_at=T0 + timedelta(hours=2))
    store.finish_run("r1", RunStatus.FAILED, T0 + timedelta(minutes=30))
    run = store.get_run("r1")
    assert run is not None
    assert (run.status, run.host, run.pid, run.concurrency, run.n_accounts, run.owner_id) == (
        "failed", "h", 10, 4, 12, "o1",
    )  # fmt: skip
    assert run.selection == {"steps": ["1", "2"], "accounts": ["a1"]}
    assert run.duration_s == 1800.0
    assert [r.run_id for r in store.list_runs()] == ["x1", "r2", "r1"]
    assert [r.run_id for r in store.list_runs(pipeline="nightly", limit=1)] == ["r2"]
    assert store.get_run("r2").resumed_from == "r1"  # type: ignore[union-attr]
    assert store.get_run("nope") is None


def test_duplicate_run_and_bad_status_are_refused(store: HistoryStore) -> None:
    store.create_run(run_id="r1", pipeline="nightly", started_at=T0)
    with pytest.raises(StoreError, match="run r1 already exists"):
        store.create_run(run_id="r1", pipeline="nightly", started_at=T0)
    with pytest.raises(ValueError, match="unknown run status"):
        store.finish_run("r1", "exploded", T0)
    with pytest.raises(StoreError, match="no run nope"):
        store.finish_run("nope", "failed", T0)


def test_attempt_written_at_start_and_updated_at_end(store: HistoryStore) -> None:
    attempt_id = store.start_attempt(start())
    (running,) = store.attempts_for_run("r1")
    assert running.attempt_id == attempt_id
    assert running.status == "running" and running.finished_at is None
    assert (running.pid, running.pgid, running.cpu_count) == (4242, 4242, 2)
    assert running.params == {"region": "eu", "pages": 3, "full": True}
    assert (running.quantity, running.n_accounts, running.concurrency) == (500.0, 12, 4)
    assert (running.load_avg, running.free_mem_mb, running.host) == (0.5, 2048.0, "host-a")
    store.finish_attempt(
        attempt_id,
        AttemptOutcome(
            status=AttemptStatus.FAILED, finished_at=T0 + timedelta(seconds=12.5),
            duration_s=12.5, exit_code=75, error_class="network_error",
            stderr_tail="ConnectionError", peak_rss_mb=123.4, cpu_s=3.2, reason="exit 75",
        ),
    )  # fmt: skip
    (done,) = store.attempts_for_run("r1")
    assert (done.status, done.exit_code, done.error_class, done.duration_s) == (
        "failed", 75, "network_error", 12.5,
    )  # fmt: skip
    assert (done.peak_rss_mb, done.cpu_s, done.reason, done.source) == (
        123.4, 3.2, "exit 75", "planner",
    )  # fmt: skip
    assert done.stderr_tail == "ConnectionError"
    with pytest.raises(StoreError, match="no attempt"):
        store.finish_attempt(attempt_id + 1000, AttemptOutcome("failed", T0, 1.0))
    with pytest.raises(ValueError, match="unknown attempt status"):
        store.finish_attempt(attempt_id, AttemptOutcome("exploded", T0, 1.0))


def test_stderr_tail_keeps_the_end_within_the_cap(store: HistoryStore) -> None:
    attempt_id = store.start_attempt(start())
    text = "é" * 5000 + "THE END"  # 10,007 bytes of UTF-8
    store.finish_attempt(attempt_id, AttemptOutcome("failed", T0, 1.0, stderr_tail=text))
    (done,) = store.attempts_for_run("r1")
    assert done.stderr_tail is not None and done.stderr_tail.endswith("THE END")
    assert len(done.stderr_tail.encode()) <= STDERR_TAIL_BYTES
    assert len(done.stderr_tail.encode()) >= STDERR_TAIL_BYTES - 3


def test_task_counts_use_the_last_attempt(store: HistoryStore) -> None:
    first = store.start_attempt(start(account="a1"))
    store.finish_attempt(first, AttemptOutcome("failed", T0 + timedelta(seconds=1), 1.0))
    second = store.start_attempt(
        start(account="a1", attempt=2, started_at=T0 + timedelta(seconds=5))
    )
    store.finish_attempt(second, AttemptOutcome("succeeded", T0 + timedelta(seconds=6), 1.0))
    other = store.start_attempt(start(account="a2"))
    store.finish_attempt(other, AttemptOutcome("timed_out", T0 + timedelta(seconds=9), 9.0))
    store.record_skipped(start(step="2", account="a2", pid=None, pgid=None), "1 failed for a2")
    assert store.run_task_counts("r1") == {"succeeded": 1, "timed_out": 1, "skipped": 1}
    skipped = [a for a in store.attempts_for_run("r1") if a.status == "skipped"]
    assert skipped[0].reason == "1 failed for a2" and skipped[0].pid is None
    assert skipped[0].finished_at == skipped[0].started_at == T0 and skipped[0].pgid is None
    # the same rule on the records of a run (what ``planner show`` counts with)
    assert task_counts(store.attempts_for_run("r1")) == store.run_task_counts("r1")
    # another run: a later attempt that started earlier still wins; equal attempt number
    # and start: the later id wins
    late = store.start_attempt(start(run_id="r2", attempt=1, started_at=T0 + timedelta(9)))
    store.finish_attempt(late, AttemptOutcome("failed", T0 + timedelta(10), 1.0))
    retry = store.start_attempt(start(run_id="r2", attempt=2))
    store.finish_attempt(retry, AttemptOutcome("cancelled", T0 + timedelta(seconds=1), 1.0))
    store.start_attempt(start(run_id="r2", account="a2"))
    tie = store.start_attempt(start(run_id="r2", account="a2"))
    store.finish_attempt(tie, AttemptOutcome("succeeded", T0 + timedelta(seconds=1), 1.0))
    assert store.runs_task_counts(["r2", "r1", "none", "r2"]) == {
        "r1": {"succeeded": 1, "timed_out": 1, "skipped": 1},
        "r2": {"cancelled": 1, "succeeded": 1},
    }
    assert store.runs_task_counts([]) == {}
    assert store.run_task_counts("none") == {}


def test_interrupt_and_abandon(store: HistoryStore) -> None:
    store.create_run(run_id="r1", pipeline="nightly", started_at=T0)
    done = store.start_attempt(start(account="a1", pgid=100))
    store.finish_attempt(done, AttemptOutcome("succeeded", T0 + timedelta(seconds=1), 1.0))
    store.start_attempt(start(account="a2", pgid=200))
    store.start_attempt(start(account="a3", pgid=300))
    store.start_attempt(start(account="a4", pgid=None))
    later = T0 + timedelta(minutes=5)
    assert store.abandon_run("r1", later) == [200, 300]
    run = store.get_run("r1")
    assert run is not None and (run.status, run.finished_at) == ("abandoned", later)
    statuses = {a.account: (a.status, a.finished_at) for a in store.attempts_for_run("r1")}
    assert statuses["a1"][0] == "succeeded"
    assert statuses["a2"] == statuses["a3"] == statuses["a4"] == ("interrupted", later)
    reasons = {a.account: a.reason for a in store.attempts_for_run("r1")}
    assert reasons == {"a1": None, "a2": "its run was abandoned", "a3": "its run was abandoned",
                       "a4": "its run was abandoned"}  # fmt: skip
    assert store.abandon_run("r1", later) == []  # nothing left running
    store.start_attempt(start(run_id="r2"))
    assert store.interrupt_running("r2", later) == 1
    assert store.interrupt_running("r2", later) == 0
    (interrupted,) = store.attempts_for_run("r2")
    assert (interrupted.status, interrupted.finished_at, interrupted.reason) == (
        "interrupted", later, "interrupted",
    )  # fmt: skip
    assert store.get_run("r1").status == "abandoned"  # type: ignore[union-attr]  # r2 alone


def test_abandon_keeps_a_finished_run_status(store: HistoryStore) -> None:
    store.create_run(run_id="r1", pipeline="nightly", started_at=T0)
    store.finish_run("r1", "succeeded", T0 + timedelta(seconds=5))
    store.abandon_run("r1", T0 + timedelta(minutes=5))
    assert store.get_run("r1").status == "succeeded"  # type: ignore[union-attr]
    assert store.get_run("r1").finished_at == T0 + timedelta(seconds=5)  # type: ignore[union-attr]


def test_plans_round_trip_newest_first(store: HistoryStore) -> None:
    first = store.save_plan("nightly", None, T0, 100.0, 130.0, {"tasks": [1, 2]})
    second = store.save_plan("nightly", "r1", T0 + timedelta(days=1), 110.0, 140.0, {"x": "y"})
    store.save_plan("other", None, T0, 1.0, 2.0, {})
    plans = store.plans("nightly")
    assert [p.plan_id for p in plans] == [second, first]
    assert (plans[0].run_id, plans[0].predicted_s, plans[0].bound_s) == ("r1", 110.0, 140.0)
    assert plans[1].document == {"tasks": [1, 2]} and plans[1].created_at == T0
    assert len(store.plans("nightly", limit=1)) == 1
    assert [p.plan_id for p in store.plans("nightly", limit=1)] == [second]
    assert plans[1].run_id is None and plans[0].document == {"x": "y"}
    assert plans[0].created_at == T0 + timedelta(days=1) and plans[0].pipeline == "nightly"
    assert store.plans("none") == []


def test_params_keep_their_types_when_equal_values_were_seen(store: HistoryStore) -> None:
    # True == 1 == 1.0 (and they hash alike): each must still be stored as itself
    for run_id, value in (("b", True), ("i", 1), ("f", 1.0), ("s", "1")):
        store.start_attempt(start(run_id=run_id, params={"full": value}))
    stored = {r: store.attempts_for_run(r)[0].params["full"] for r in ("b", "i", "f", "s")}
    assert [(r, type(v).__name__, v) for r, v in stored.items()] == [
        ("b", "bool", True), ("i", "int", 1), ("f", "float", 1.0), ("s", "str", "1"),
    ]  # fmt: skip
