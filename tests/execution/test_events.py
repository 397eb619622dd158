"""What observers receive: typed events from real runs, stops through the run control, an
executor behind the interface, and the CLI progress displays fed with those events."""

from __future__ import annotations

import io
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from planner.clock import Clock
from planner.config import Pipeline
from planner.display.progress import LiveProgress, PlainProgress
from planner.execution import (
    Launch,
    LocalExecutor,
    RunControl,
    RunEvent,
    RunFinished,
    Runner,
    RunRequest,
    RunStarted,
    RunStopping,
    StopReason,
    TaskExit,
    TaskFinished,
    TaskHandle,
    TaskKey,
    TaskRetrying,
    TasksCancelled,
    TaskSkipped,
    TaskStarted,
)
from planner.history import HistoryStore
from planner.status import AttemptStatus, RunStatus

from .conftest import live

MakePipeline = Callable[..., Pipeline]
E = TypeVar("E")


class Recorder:
    """Keeps every event; ``then`` runs a callback on each (from the runner's thread)."""

    def __init__(self, then: Callable[[RunEvent], None] | None = None) -> None:
        self.events: list[RunEvent] = []
        self.then = then

    def on_event(self, event: RunEvent) -> None:
        self.events.append(event)
        if self.then is not None:
            self.then(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


def test_events_of_a_run_with_a_retry_a_failure_and_skips(
    make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    flaky = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; "
        "[ $n -ge 1 ] || exit 75"
    )
    p = make_pipeline(
        accounts=["a", "b"],
        retry_policies={"std": {
            "classify": {"network_error": {"exit_codes": [75]}},
            "on": {"network_error": {"max_retries": 2, "backoff": "fixed", "base": 0.05,
                                     "jitter": False}}}},
        steps=[{"id": "flaky", "command": flaky, "shell": True, "retry": "std"},
               {"id": "bad", "per_account": True, "shell": True, "depends_on": ["flaky"],
                "command": "[ {account} = a ] || exit 9"},
               {"id": "after", "command": ["true"], "per_account": True, "depends_on": ["bad"]}],
    )  # fmt: skip
    seen = Recorder()
    result = Runner(p, store, observer=seen).run()
    assert isinstance(seen.events[0], RunStarted) and seen.events[-1] == RunFinished(result)
    assert seen.events[0].totals == {"flaky": 1, "bad": 2, "after": 2}
    (retry,) = seen.of(TaskRetrying)
    assert (retry.key, retry.attempt, retry.status, retry.exit_code, retry.error_class) == (
        TaskKey("flaky"), 1, AttemptStatus.FAILED, 75, "network_error"
    )  # fmt: skip
    assert retry.delay_s == 0.05 and retry.duration_s >= 0
    finished = {(e.key, e.attempt): e for e in seen.of(TaskFinished)}
    assert finished[TaskKey("flaky"), 2].status == AttemptStatus.SUCCEEDED
    bad_b = finished[TaskKey("bad", "b"), 1]
    assert (bad_b.status, bad_b.exit_code, bad_b.error_class) == ("failed", 9, "default")
    skipped = TaskSkipped(TaskKey("after", "b"), "upstream task bad[b] failed")
    assert seen.of(TaskSkipped) == [skipped]
    started = seen.of(TaskStarted)
    assert len(started) == len(finished) + 1  # one attempt per start: finished or retrying
    assert not seen.of(RunStopping) and not seen.of(TasksCancelled)
    assert result.status == RunStatus.FAILED and not result.stopped_by_signal


def _stopping_pipeline(make_pipeline: MakePipeline, pids: Path) -> Pipeline:
    pids.mkdir()
    return make_pipeline(
        accounts=["a", "b", "c", "d", "e"],
        concurrency={"max": 2},
        steps=[{"id": "slow", "per_account": True, "shell": True,
                "command": f"echo $$ > {pids}/{{account}}; exec sleep 30"},
               {"id": "after", "command": ["true"], "depends_on": ["slow"]}],
    )  # fmt: skip


def test_a_stop_cancels_the_waiting_tasks_in_one_event(
    make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    p = _stopping_pipeline(make_pipeline, pids)
    control = RunControl()

    def stop_when_two_run(event: RunEvent) -> None:
        if isinstance(event, TaskStarted) and event.key.account == "b":
            control.request_stop()  # what the SIGINT handler does

    seen = Recorder(stop_when_two_run)
    out = io.StringIO()
    plain = PlainProgress(out)

    def both(event: RunEvent) -> None:
        stop_when_two_run(event)
        plain.on_event(event)

    seen.then = both
    request = RunRequest(stop_grace=0.2, kill_grace=0.5)
    result = Runner(p, store, request, observer=seen, control=control).run()
    assert seen.of(RunStopping) == [RunStopping(StopReason.SIGNAL, 0.2, 2)]
    (cancelled,) = seen.of(TasksCancelled)
    assert sorted(cancelled.keys) == [TaskKey("after"), *(TaskKey("slow", a) for a in "cde")]
    killed = seen.of(TaskFinished)
    assert [(e.status, e.exit_code) for e in killed] == [(AttemptStatus.CANCELLED, 143)] * 2
    assert result.status == RunStatus.CANCELLED and result.exit_code == 1
    assert result.stopped_by_signal and not result.lease_lost
    assert result.cancelled_not_started == 4
    assert store.run_task_counts(result.run_id) == {"cancelled": 6}
    assert not any(live(int(f.read_text())) for f in pids.iterdir())
    lines = out.getvalue().splitlines()
    assert sum("stopping:" in line for line in lines) == 1
    assert any(line.endswith("stopping: signal received, waiting up to 0.2s for 2 running task(s)")
               for line in lines)  # fmt: skip
    assert next(line for line in lines if "had not started" in line).endswith(
        "cancelled 4 task(s) that had not started"
    )
    assert sum(": cancelled (exit 143)" in line for line in lines) == 2


def test_a_second_stop_kills_at_once(
    make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path
) -> None:
    p = _stopping_pipeline(make_pipeline, tmp_path / "pids")
    control = RunControl()

    def stop_twice(event: RunEvent) -> None:
        first = isinstance(event, TaskStarted) and event.key.account == "b"
        if first or isinstance(event, TasksCancelled):  # the second right after the first
            control.request_stop()

    seen = Recorder(stop_twice)
    request = RunRequest(stop_grace=60, kill_grace=60)  # only the second stop can end it
    result = Runner(p, store, request, observer=seen, control=control).run()
    reasons = [e.reason for e in seen.of(RunStopping)]
    assert reasons == [StopReason.SIGNAL, StopReason.FORCED]
    assert {e.exit_code for e in seen.of(TaskFinished)} == {137}
    assert result.status == RunStatus.CANCELLED


class CountingExecutor:
    """A real LocalExecutor, counting what the loop asks of it."""

    def __init__(self) -> None:
        self.inner = LocalExecutor(sample_interval=0.05)
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def _note(self, what: str) -> None:
        with self._lock:
            self.calls.append(what)

    def open(self, clock: Clock) -> None:
        self._note("open")
        self.inner.open(clock)

    def close(self) -> None:
        self._note("close")
        self.inner.close()

    def start(self, launch: Launch) -> TaskHandle:
        self._note("start")
        return self.inner.start(launch)

    def wait(self, handle: TaskHandle, deadline: float | None, kill_grace: float) -> TaskExit:
        self._note("wait")
        return self.inner.wait(handle, deadline, kill_grace)

    def request_kill(self, handle: TaskHandle, grace: float) -> None:
        self._note("kill")
        self.inner.request_kill(handle, grace)


def test_the_runner_goes_through_the_executor(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    code = "import time; x = b'x' * 40_000_000; time.sleep(1.0)"  # sampled under load too
    p = make_pipeline(
        accounts=["a", "b", "c"],
        steps=[{"id": "s", "per_account": True, "command": [sys.executable, "-c", code]}],
    )
    executor = CountingExecutor()
    result = Runner(p, store, executor=executor).run()
    assert result.status == "succeeded"
    assert executor.calls[0] == "open" and executor.calls[-1] == "close"
    assert executor.calls.count("start") == executor.calls.count("wait") == 3
    rows = store.attempts_for_run(result.run_id)
    assert all(r.pid and r.pid == r.pgid for r in rows)  # the handle's ids
    assert all(r.peak_rss_mb is not None and r.peak_rss_mb > 35 for r in rows)  # its usage


def test_plain_lines_name_exit_code_error_class_and_retry() -> None:
    out = io.StringIO()
    plain = PlainProgress(out)
    key = TaskKey("1", "acct-03")
    for event in (
        RunStarted("r1", {"1": 2}, 4),
        TaskStarted(key, 1),
        TaskRetrying(key, 1, AttemptStatus.FAILED, 0.5, 75, "network_error", 2.0),
        TaskStarted(key, 2),
        TaskFinished(key, 2, AttemptStatus.TIMED_OUT, 3.0, 143, "timeout"),
        TaskSkipped(TaskKey("2"), "upstream task 1[acct-03] failed"),
        TaskFinished(TaskKey("1", "b"), 1, AttemptStatus.SUCCEEDED, 0.1, 0, None),
    ):
        plain.on_event(event)
    lines = [re.sub(r"^\[\s*[\d.]+s\] ", "", line) for line in out.getvalue().splitlines()]
    assert lines == [
        "1[acct-03]: failed (exit 75, network_error), retry 2 in 2.0s",
        "1[acct-03] attempt 2: timed_out (exit 143, timeout)",
        "2: skipped (upstream task 1[acct-03] failed)",
        "1[b]: succeeded",
    ]


def test_the_live_table_counts_retries_and_cancelled() -> None:
    progress = LiveProgress()
    a, b = TaskKey("s", "a"), TaskKey("s", "b")
    try:
        for event in (
            RunStarted("r1", {"s": 3}, 2),
            TaskStarted(a, 1),
            TaskStarted(b, 1),
            TaskRetrying(a, 1, AttemptStatus.FAILED, 0.1, 75, "network_error", 1.0),
            TaskStarted(a, 2),
            TaskFinished(a, 2, AttemptStatus.SUCCEEDED, 0.1, 0, None),
            RunStopping(StopReason.SIGNAL, 10.0, 1),
            TasksCancelled((TaskKey("s", "c"),)),
            TaskFinished(b, 1, AttemptStatus.CANCELLED, 0.3, 143, None),
        ):
            progress.on_event(event)
        step = progress.steps["s"]
        assert (step.done, step.running, step.retries, step.failed, step.cancelled) == (
            3, 0, 1, 0, 2
        )  # fmt: skip
    finally:
        progress.close()
