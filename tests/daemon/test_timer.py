"""The APScheduler shell with a real BackgroundScheduler: a start decided when a job ends
is never lost, however fast the job."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED

from planner.daemon.timer import HOLD, DecidedTrigger, Timer

RUNS = 300


def test_a_fast_job_that_decides_its_own_next_start_never_loses_it() -> None:
    """300 runs of a job that ends at once and decides the next start 2 ms later: a single
    lost reschedule would hold the job for a year and the loop would stall."""
    count = 0
    done = threading.Event()
    timer: Timer

    def due(name: str) -> None:
        nonlocal count
        count += 1
        if count >= RUNS:
            done.set()
            return
        timer.schedule(name, datetime.now(UTC) + timedelta(milliseconds=2))

    timer = Timer(pipelines=1, on_due=due, on_tick=lambda: None, tick_s=3600.0)
    timer.start()
    try:
        timer.schedule("p", datetime.now(UTC))
        assert done.wait(60), f"stalled after {count} of {RUNS} runs"
    finally:
        timer.shutdown()
    assert count == RUNS


def test_rescheduling_from_the_schedulers_own_thread_is_refused() -> None:
    """The pitfall itself: an EVENT_JOB_EXECUTED listener of a fast job runs in the
    scheduler's thread, where a new time would be overwritten; the timer refuses there."""
    errors: list[BaseException] = []
    seen = threading.Event()
    timer = Timer(pipelines=1, on_due=lambda name: None, on_tick=lambda: None, tick_s=3600.0)
    scheduler_thread: list[threading.Thread] = []

    def listener(event: object) -> None:
        if threading.current_thread() is getattr(timer.scheduler, "_thread", None):
            scheduler_thread.append(threading.current_thread())
            try:
                timer.schedule("p", datetime.now(UTC) + timedelta(seconds=1))
            except RuntimeError as exc:
                errors.append(exc)
        seen.set()

    timer.scheduler.add_listener(listener, EVENT_JOB_EXECUTED)
    timer.start()
    try:
        for _ in range(50):  # until a callback lands in the scheduler's thread
            seen.clear()
            timer.schedule("p", datetime.now(UTC))
            assert seen.wait(10)
            if scheduler_thread:
                break
            time.sleep(0.01)
    finally:
        timer.shutdown()
    if not scheduler_thread:
        pytest.skip("no listener call landed in the scheduler's thread in 50 tries")
    assert errors and "scheduler's thread" in str(errors[0])


def test_the_trigger_holds_until_the_next_decision() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    trigger = DecidedTrigger(now)
    assert trigger.get_next_fire_time(None, now) == now
    assert trigger.get_next_fire_time(now, now) == now + HOLD  # fired: held
    trigger.decide(now + timedelta(seconds=5))
    assert trigger.get_next_fire_time(now, now) == now + timedelta(seconds=5)
