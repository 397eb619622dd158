"""The run loop with real processes: limits, retries, skips, resume, timeouts, env."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from planner.clock import FakeClock
from planner.config import Pipeline
from planner.errors import UsageError
from planner.execution import Runner, RunRequest
from planner.history import AttemptRecord, HistoryStore

from .conftest import live

MakePipeline = Callable[..., Pipeline]


def max_overlap(rows: list[AttemptRecord]) -> int:
    events: list[tuple[datetime, int]] = []
    for r in rows:
        assert r.finished_at is not None
        events += [(r.started_at, 1), (r.finished_at, -1)]
    events.sort()  # at equal times the end (-1) sorts before the start
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_concurrency_limit_from_recorded_times(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(
        accounts=[f"a{i}" for i in range(9)],
        concurrency={"max": 3},
        steps=[{"id": "s", "command": ["sleep", "0.15"], "per_account": True},
               {"id": "t", "command": ["true"]}],
    )  # fmt: skip
    result = Runner(p, store).run()
    rows = store.attempts_for_run(result.run_id)
    assert result.status == "succeeded" and result.counts == {"succeeded": 10}
    assert max_overlap(rows) == 3
    assert all(r.concurrency == 3 and r.n_accounts == 9 for r in rows)
    assert all(r.duration_s is not None and r.duration_s >= 0.15 for r in rows if r.step == "s")


def test_retries_follow_the_policy(
    make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    # Fails with exit 75 on its first two tries, then succeeds.
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; "
        '[ "$n" -ge 2 ] || {{ echo "ConnectionError" >&2; exit 75; }}'
    )
    p = make_pipeline(
        retry_policies={
            "std": {
                "classify": {"network_error": {"exit_codes": [75]}},
                "on": {"network_error": {"max_retries": 3, "backoff": "linear", "base": 0.2,
                                         "cap": 1, "jitter": True}},
            }
        },
        steps=[{"id": "s", "command": script, "shell": True, "retry": "std"},
               {"id": "after", "command": ["true"], "depends_on": ["s"]}],
    )  # fmt: skip
    result = Runner(p, store, rng=random.Random(3)).run()
    rows = [r for r in store.attempts_for_run(result.run_id) if r.step == "s"]
    assert result.status == "succeeded"
    assert [(r.attempt, r.status, r.error_class) for r in rows] == [
        (1, "failed", "network_error"), (2, "failed", "network_error"), (3, "succeeded", None)
    ]  # fmt: skip
    draw = random.Random(3)
    expected = [draw.uniform(0, 0.2), draw.uniform(0, 0.4)]
    delays = [float(re.search(r"in ([\d.]+)s", r.reason or "").group(1)) for r in rows[:2]]
    assert delays == pytest.approx(expected, abs=0.006)
    for before, after, delay in zip(rows, rows[1:], expected, strict=False):
        assert before.finished_at is not None
        gap = (after.started_at - before.finished_at).total_seconds()
        assert gap >= delay - 0.01
    assert "ConnectionError" in (rows[0].stderr_tail or "")


def test_retry_waits_on_the_injected_clock(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(
        retry_policies={"std": {"on": {"default": {
            "max_retries": 2, "backoff": "exponential", "base": "10s", "cap": "15s",
            "jitter": False}}}},
        steps=[{"id": "s", "command": ["false"], "retry": "std"},
               {"id": "after", "command": ["true"], "depends_on": ["s"]}],
    )  # fmt: skip
    clock = FakeClock()
    result = Runner(p, store, clock=clock).run()  # 25 s of backoff, no real waiting
    rows = store.attempts_for_run(result.run_id)
    assert result.status == "failed"
    assert [(r.step, r.attempt, r.status) for r in rows] == [
        ("s", 1, "failed"), ("s", 2, "failed"), ("s", 3, "failed"), ("after", 1, "skipped")
    ]  # fmt: skip
    assert sum(clock.sleeps) == pytest.approx(25.0)
    assert rows[3].reason == "upstream task s failed"


def test_skip_then_resume_runs_only_what_did_not_succeed(
    make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.write_text("b")
    marks = tmp_path / "marks"
    marks.mkdir()
    p = make_pipeline(
        accounts=["a", "b", "c"],
        steps=[
            {"id": "one", "command": ["touch", f"{marks}/one.{{account}}"], "per_account": True},
            {"id": "two", "per_account": True, "depends_on": ["one"], "shell": True,
             "command": f"grep -qx {{account}} {broken} && exit 4; touch {marks}/two.{{account}}"},
            {"id": "three", "command": ["true"], "per_account": True, "depends_on": ["two"]},
            {"id": "all", "command": ["true"], "depends_on": ["three"]},
        ],
    )  # fmt: skip
    first = Runner(p, store).run()
    assert first.status == "failed" and first.exit_code == 1
    assert first.counts == {"succeeded": 7, "failed": 1, "skipped": 2}
    skipped = {(r.step, r.account) for r in store.attempts_for_run(first.run_id)
               if r.status == "skipped"}  # fmt: skip
    assert skipped == {("three", "b"), ("all", None)}
    for f in marks.iterdir():
        f.unlink()
    broken.write_text("")
    second = Runner(p, store, RunRequest(resume=first.run_id)).run()
    assert second.status == "succeeded"
    ran = {(r.step, r.account) for r in store.attempts_for_run(second.run_id)}
    assert ran == {("two", "b"), ("three", "b"), ("all", None)}
    assert sorted(f.name for f in marks.iterdir()) == ["two.b"]
    record = store.get_run(second.run_id)
    assert record is not None and record.resumed_from == first.run_id
    # A resume of the resume has nothing left to do.
    third = Runner(p, store, RunRequest(resume=second.run_id)).run()
    assert third.status == "succeeded" and third.counts == {}


def test_timeout_in_a_run(make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    p = make_pipeline(
        steps=[{"id": "slow", "shell": True, "timeout": "0.3s",
                "command": f"sleep 30 & echo $! > {pids}; sleep 30"}],
    )  # fmt: skip
    result = Runner(p, store, RunRequest(kill_grace=0.5)).run()
    (row,) = store.attempts_for_run(result.run_id)
    assert (row.status, row.error_class, result.status) == ("timed_out", "timeout", "failed")
    assert row.duration_s is not None and 0.3 <= row.duration_s < 2
    assert not live(int(pids.read_text()))


def test_task_environment_log_and_machine_state(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(
        accounts=["x"],
        steps=[{"id": "e", "per_account": True, "quantity": 7, "params": {"region": "eu"},
                "env": {"EXTRA": "1"}, "shell": True,
                "command": 'echo "$PLANNER_RUN_ID $PLANNER_STEP $PLANNER_ACCOUNT '
                           '$PLANNER_QUANTITY $EXTRA {region} {quantity}"'}],
    )  # fmt: skip
    result = Runner(p, store).run()
    log = p.state_dir / "logs" / result.run_id / "e.x.1.log"
    assert log.read_text().split() == [result.run_id, "e", "x", "7", "1", "eu", "7"]
    (row,) = store.attempts_for_run(result.run_id)
    assert row.quantity == 7 and row.params == {"region": "eu"} and row.pid == row.pgid
    assert row.cpu_count and row.free_mem_mb and row.load_avg is not None
    assert row.started_at.tzinfo is not None


def test_bad_selection_is_refused_before_anything_runs(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(accounts=["a"], steps=[{"id": "s", "command": ["true"], "per_account": True}])
    with pytest.raises(UsageError, match="unknown accounts"):
        Runner(p, store, RunRequest(accounts=["zz"])).run()
    with pytest.raises(UsageError, match="no run"):
        Runner(p, store, RunRequest(resume="nope")).run()
    assert store.list_runs() == []


def test_auto_concurrency_from_cpus_and_memory(make_pipeline: MakePipeline) -> None:
    import psutil

    from planner.execution import auto_concurrency

    cpus = psutil.cpu_count() or 1
    steps = [{"id": "s", "command": ["true"]}]
    assert auto_concurrency(make_pipeline(steps=steps)) == max(1, cpus - 1)
    assert auto_concurrency(make_pipeline(concurrency={"max": 7}, steps=steps)) == 7
    free = psutil.virtual_memory().available
    huge = make_pipeline(concurrency={"memory_per_task": free * 2 // 3}, steps=steps)
    assert auto_concurrency(huge) == 1


def test_auto_timeout_comes_from_the_directives(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    from planner.execution import RunDirectives, TaskKey

    p = make_pipeline(
        accounts=["fast", "slow"],
        steps=[{"id": "s", "command": ["sleep", "0.4"], "per_account": True, "timeout": "auto"}],
    )
    directives = RunDirectives(timeouts={TaskKey("s", "slow"): 0.1})
    result = Runner(p, store, RunRequest(kill_grace=0.2)).run(directives=directives)
    status = {r.account: r.status for r in store.attempts_for_run(result.run_id)}
    assert status == {"fast": "succeeded", "slow": "timed_out"}
