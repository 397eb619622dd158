"""Memory: a step's ``memory_limit`` stops a real memory-hungry tree (class ``memory``,
retried by its policy), and ``memory_pressure`` pauses task starts while the system's
memory is short (cleanup once per episode, resume, a start anyway after ``max_pause``)."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from planner.clock import SYSTEM_CLOCK, FakeClock
from planner.config import Pipeline
from planner.config.models import MemoryPressure
from planner.display.progress import PlainProgress
from planner.execution import (
    FixedMemoryProbe,
    Launch,
    PressureCleanup,
    PressureForcedStart,
    PressureGate,
    PressurePaused,
    PressureResumed,
    RunEvent,
    Runner,
    RunRequest,
    TaskFinished,
    TaskRetrying,
    TaskStarted,
    format_memory,
)
from planner.history import HistoryStore
from planner.status import AttemptStatus, RunStatus

from .conftest import live, wait_for

MakePipeline = Callable[..., Pipeline]
E = TypeVar("E")

#: Starts a sleeping grandchild, writes both pids, then takes 10 MB every 50 ms up to
#: 300 MB (bytes written, so resident), and sleeps: only a kill ends it early.
HUNGRY = textwrap.dedent(
    """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.environ["PIDS_FILE"], "a") as fh:
        fh.write(f"{os.getpid()} {child.pid}\\n")
    chunks = []
    for _ in range(30):
        chunks.append(b"x" * (10 * 1024 * 1024))
        time.sleep(0.05)
    time.sleep(120)
    """
)

RETRY_MEMORY_ONCE = {
    "on": {"memory": {"max_retries": 1, "backoff": "fixed", "base": 0, "jitter": False}}
}


class Recorder:
    """Keeps every event of a run."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    def on_event(self, event: RunEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


class Tee:
    """Events to a :class:`Recorder` and to the plain progress lines."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.out = io.StringIO()
        self.plain = PlainProgress(self.out)

    def on_event(self, event: RunEvent) -> None:
        self.recorder.on_event(event)
        self.plain.on_event(event)

    def lines(self) -> list[str]:
        return [re.sub(r"^\[\s*[\d.]+s\] ", "", x) for x in self.out.getvalue().splitlines()]


# --- memory_limit ----------------------------------------------------------------------


def test_a_task_over_its_memory_limit_is_stopped_as_class_memory_and_retried(
    make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    script = tmp_path / "hungry.py"
    script.write_text(HUNGRY, encoding="utf-8")
    p = make_pipeline(
        steps=[
            {
                "id": "s",
                "command": [sys.executable, str(script)],
                "env": {"PIDS_FILE": str(pids_file)},
                "memory_limit": "100MB",
                "timeout": "60s",  # a backstop: a limit that failed shows as a timeout
                "retry": RETRY_MEMORY_ONCE,
            },
            {"id": "after", "command": ["true"], "depends_on": ["s"]},
        ],
    )
    seen = Tee()
    request = RunRequest(kill_grace=2.0, sample_interval=0.1)
    started = time.monotonic()
    result = Runner(p, store, request, observer=seen).run()
    assert time.monotonic() - started < 30

    rows = store.attempts_for_run(result.run_id)
    assert result.status == RunStatus.FAILED
    assert [(r.step, r.attempt, r.status, r.error_class) for r in rows] == [
        ("s", 1, "failed", "memory"),
        ("s", 2, "failed", "memory"),
        ("after", 1, "skipped", None),
    ]
    limit = format_memory(100_000_000)
    assert limit == "95MiB"
    first, second = rows[0], rows[1]
    assert re.fullmatch(rf"memory limit {limit} exceeded \(peak \d+MiB\); retry 2 in 0.00s",
                        first.reason or "")  # fmt: skip
    match = re.fullmatch(rf"memory limit {limit} exceeded \(peak (\d+)MiB\)", second.reason or "")
    assert match is not None, second.reason
    assert 95 < int(match.group(1)) < 300
    for row in (first, second):
        assert row.exit_code in (143, 137)  # as observed: TERM, or KILL after the grace
        assert row.peak_rss_mb is not None and 95 < row.peak_rss_mb < 300

    # events and progress lines
    retrying = seen.recorder.of(TaskRetrying)
    finished = [e for e in seen.recorder.of(TaskFinished) if e.key.step == "s"]
    assert [(e.error_class, e.memory_limit) for e in retrying] == [("memory", 100_000_000)]
    assert [(e.status, e.error_class, e.memory_limit) for e in finished] == [
        (AttemptStatus.FAILED, "memory", 100_000_000)
    ]
    lines = seen.lines()
    assert f"s: failed (memory limit {limit}), retry 2 in 0.0s" in lines
    assert f"s attempt 2: failed (memory limit {limit})" in lines

    # the whole tree of both attempts is gone (the task and its sleeping grandchild)
    pids = [int(pid) for line in pids_file.read_text().splitlines() for pid in line.split()]
    assert len(pids) == 4
    wait_for(lambda: not any(live(pid) for pid in pids), timeout=5, what="the trees to end")


def test_a_task_under_its_memory_limit_runs_to_its_end(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    code = "import time; x = b'x' * 30_000_000; time.sleep(0.6)"
    p = make_pipeline(
        steps=[{"id": "s", "command": [sys.executable, "-c", code], "memory_limit": "200MB"}]
    )
    result = Runner(p, store, RunRequest(sample_interval=0.05)).run()
    (row,) = store.attempts_for_run(result.run_id)
    assert (row.status, row.error_class, row.reason) == ("succeeded", None, None)
    assert row.peak_rss_mb is not None and row.peak_rss_mb > 28


# --- memory_pressure: the run loop -------------------------------------------------------


class MarkerProbe:
    """High (95 %) until the cleanup command wrote its marker, then low (30 %). Every
    reading after the first waits for the marker (a real deadline), so the run resumes
    only once the cleanup has run, whatever the machine's speed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self.readings: list[float] = []

    def fraction_in_use(self) -> float:
        if self.readings:
            deadline = time.monotonic() + 20
            while not self.marker.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        value = 0.3 if self.marker.exists() else 0.95
        self.readings.append(value)
        return value


def cleanup_writing(marker: Path) -> list[str]:
    """A cleanup command that appends one line to ``marker`` per run."""
    code = "import sys; open(sys.argv[1], 'a').write('cleaned\\n')"
    return [sys.executable, "-c", code, str(marker)]


def test_pressure_pauses_starts_runs_the_cleanup_once_and_resumes(
    make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path
) -> None:
    marker = tmp_path / "cleaned"
    p = make_pipeline(
        accounts=["a", "b", "c"],
        concurrency={"max": 3},
        memory_pressure={
            "threshold": 0.8,
            "check_every": "1s",
            "cleanup_command": cleanup_writing(marker),
        },
        steps=[{"id": "s", "command": ["sleep", "0.2"], "per_account": True}],
    )
    clock = FakeClock()
    t0 = clock.now()
    probe = MarkerProbe(marker)
    seen = Tee()
    result = Runner(p, store, clock=clock, observer=seen, memory_probe=probe).run()

    assert result.status == RunStatus.SUCCEEDED and result.counts == {"succeeded": 3}
    assert marker.read_text() == "cleaned\n"  # once for the episode, though read twice
    assert probe.readings == [0.95, 0.3]
    events = seen.recorder.events
    kinds = [type(e).__name__ for e in events if not isinstance(e, PressureCleanup)]
    assert kinds[:3] == ["RunStarted", "PressurePaused", "PressureResumed"]
    assert kinds.count("TaskStarted") == 3 and "PressurePaused" not in kinds[2:]
    (paused,) = seen.recorder.of(PressurePaused)
    assert (paused.memory, paused.threshold, paused.waiting, paused.running) == (0.95, 0.8, 3, 0)
    assert paused.cleanup == tuple(cleanup_writing(marker))
    (resumed,) = seen.recorder.of(PressureResumed)
    assert (resumed.memory, resumed.peak) == (0.3, 0.95)
    assert resumed.paused_s == pytest.approx(1.0)
    (cleaned,) = seen.recorder.of(PressureCleanup)
    assert cleaned.cleanup.exit_code == 0 and cleaned.cleanup.error is None

    (pause,) = result.pauses
    assert pause.started_at == t0
    assert pause.ended_at == t0 + timedelta(seconds=resumed.paused_s)
    assert (pause.memory_at_start, pause.memory_peak, pause.memory_at_end) == (0.95, 0.95, 0.3)
    assert (pause.threshold, pause.waiting, pause.forced_starts) == (0.8, 3, 0)
    assert pause.cleanup is not None and pause.cleanup.exit_code == 0
    assert pause.cleanup.command == tuple(cleanup_writing(marker))
    document = json.loads(json.dumps(pause.as_dict()))
    assert document["memory_at_start"] == 0.95 and document["cleanup"]["exit_code"] == 0
    assert store.pauses_for_run(result.run_id) == [document]  # recorded in the history
    # the tasks started once the pause was over
    rows = store.attempts_for_run(result.run_id)
    assert all(r.started_at >= pause.ended_at for r in rows)

    lines = seen.lines()
    assert "paused: memory 95% in use > 80%; 3 task(s) waiting" in lines
    assert "resumed: memory 30% in use < 80% after 1.0s paused (peak 95%)" in lines
    assert any(re.fullmatch(r"cleanup .*cleaned: exit 0 in \S+", line) for line in lines)
    assert (p.state_dir / "logs" / result.run_id / "cleanup.1.log").exists()


def test_max_pause_starts_one_task_when_nothing_runs(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(
        accounts=["a", "b"],
        concurrency={"max": 2},
        memory_pressure={"threshold": 0.8, "check_every": "1s", "max_pause": "10s"},
        steps=[{"id": "s", "command": ["true"], "per_account": True}],
    )
    clock = FakeClock()
    probe = FixedMemoryProbe(0.99)  # memory never falls
    seen = Tee()
    result = Runner(p, store, clock=clock, observer=seen, memory_probe=probe).run()

    assert result.status == RunStatus.SUCCEEDED and result.counts == {"succeeded": 2}
    forced = seen.recorder.of(PressureForcedStart)
    assert len(forced) == 2 and all(e.idle_s >= 10 for e in forced)
    assert not seen.recorder.of(PressureResumed)
    # one task at a time: each start follows a forced start, after the previous one ended
    kinds = [type(e).__name__ for e in seen.recorder.events]
    i = kinds.index("PressureForcedStart")
    assert kinds[i:] == [
        "PressureForcedStart", "TaskStarted", "TaskFinished",
        "PressureForcedStart", "TaskStarted", "TaskFinished", "RunFinished",
    ]  # fmt: skip
    assert clock.monotonic() >= 20
    assert probe.readings >= 20  # read every second of the pause, not in a tight loop
    assert probe.readings <= 25
    (pause,) = result.pauses
    assert pause.forced_starts == 2 and pause.memory_at_end is None  # the run ended paused
    assert pause.duration_s == pytest.approx(20.0, abs=0.5)
    assert pause.waiting == 2
    lines = seen.lines()
    line = "paused 10.0s with no task running (memory 99% in use > 80%): starting 1 task anyway"
    assert lines.count(line) == 2


def test_real_memory_reading_over_a_low_threshold_pauses_and_still_finishes(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(
        accounts=["a", "b"],
        concurrency={"max": 2},
        memory_pressure={"threshold": 0.01, "check_every": "0.05s", "max_pause": "0.3s"},
        steps=[{"id": "s", "command": ["true"], "per_account": True}],
    )
    seen = Recorder()
    started = time.monotonic()
    result = Runner(p, store, observer=seen).run()  # the real probe: psutil
    assert time.monotonic() - started < 20
    assert result.status == RunStatus.SUCCEEDED
    (paused,) = seen.of(PressurePaused)
    assert 0.01 < paused.memory < 1.0
    (pause,) = result.pauses
    assert pause.forced_starts == 2 and pause.memory_at_start == paused.memory
    assert pause.duration_s >= 0.6


def test_a_stop_during_a_pause_ends_it_and_the_run(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(
        accounts=["a", "b"],
        memory_pressure={"threshold": 0.5, "max_pause": "1h"},
        steps=[{"id": "s", "command": ["true"], "per_account": True}],
    )
    clock = FakeClock()
    runner = Runner(p, store, clock=clock, memory_probe=FixedMemoryProbe(0.9))

    class StopWhenPaused:
        def on_event(self, event: RunEvent) -> None:
            if isinstance(event, PressurePaused):
                runner.control.request_stop()

    runner.observer = StopWhenPaused()
    result = runner.run()
    assert result.status == RunStatus.CANCELLED and result.cancelled_not_started == 2
    (pause,) = result.pauses
    assert pause.memory_at_end is None and pause.forced_starts == 0
    assert clock.monotonic() < 60


# --- memory_pressure: the gate, driven with ``now`` ----------------------------------------


def test_the_gate_runs_the_cleanup_once_per_episode(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    command = tuple(cleanup_writing(marker))
    settings = MemoryPressure(threshold=0.8, check_every=1.0, max_pause=100.0,
                              cleanup_command=command)  # fmt: skip
    probe = FixedMemoryProbe(0.9)
    events: list[RunEvent] = []
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    gate = PressureGate(
        settings,
        probe,
        clock=SYSTEM_CLOCK,
        wall=lambda mono: t0 + timedelta(seconds=mono),
        emit=events.append,
        cleanup_launch=lambda n: Launch(command, dict(os.environ), tmp_path / f"c{n}.log"),
    )
    assert gate.admit(0.0, 0, running=0, waiting=lambda: 0) == 0  # nothing wanted: no reading
    assert probe.readings == 0
    assert gate.admit(0.0, 2, running=1, waiting=lambda: 4) == 0  # episode 1 begins
    assert gate.paused and probe.readings == 1
    assert gate.admit(0.5, 2, running=1, waiting=lambda: 4) == 0  # no reading before 1 s
    assert probe.readings == 1
    probe.fraction = 0.95
    assert gate.admit(1.0, 2, running=1, waiting=lambda: 4) == 0  # still high: no new cleanup
    probe.fraction = 0.5
    assert gate.admit(2.0, 2, running=1, waiting=lambda: 4) == 2  # resumed
    assert not gate.paused
    assert gate.admit(2.5, 2, running=1, waiting=lambda: 4) == 2  # between readings
    probe.fraction = 0.85
    assert gate.admit(3.0, 1, running=2, waiting=lambda: 1) == 0  # episode 2
    assert gate.next_wake == 4.0
    pauses = gate.close(3.5)

    assert marker.read_text() == "cleaned\ncleaned\n"  # one per episode
    assert [type(e).__name__ for e in events if not isinstance(e, PressureCleanup)] == [
        "PressurePaused", "PressureResumed", "PressurePaused"
    ]  # fmt: skip
    assert len([e for e in events if isinstance(e, PressureCleanup)]) == 2
    first, second = pauses
    assert (first.started_at, first.ended_at) == (t0, t0 + timedelta(seconds=2))
    assert (first.memory_at_start, first.memory_peak, first.memory_at_end) == (0.9, 0.95, 0.5)
    assert first.waiting == 4
    assert (second.started_at, second.ended_at) == (t0 + timedelta(seconds=3),
                                                    t0 + timedelta(seconds=3.5))  # fmt: skip
    assert second.memory_at_end is None and second.waiting == 1
    assert all(p.cleanup is not None and p.cleanup.exit_code == 0 for p in pauses)


def test_a_cleanup_that_cannot_start_is_recorded_not_raised(tmp_path: Path) -> None:
    missing = (str(tmp_path / "no-such-program"),)
    settings = MemoryPressure(threshold=0.5, cleanup_command=missing)
    events: list[RunEvent] = []
    gate = PressureGate(
        settings,
        FixedMemoryProbe(0.9),
        clock=SYSTEM_CLOCK,
        wall=lambda mono: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=mono),
        emit=events.append,
        cleanup_launch=lambda n: Launch(missing, {}, tmp_path / f"c{n}.log"),
    )
    assert gate.admit(0.0, 1, running=0, waiting=lambda: 1) == 0
    (pause,) = gate.close(1.0)
    assert pause.cleanup is not None and pause.cleanup.exit_code is None
    assert "cannot start" in (pause.cleanup.error or "")
    out = io.StringIO()
    plain = PlainProgress(out)
    for event in events:
        plain.on_event(event)
    assert "cleanup " in out.getvalue() and "could not start" in out.getvalue()


def test_memory_sizes_read_as_operators_write_them() -> None:
    assert format_memory(512 * 2**20) == "512MiB"
    assert format_memory(730 * 2**20 + 1000) == "730MiB"
    assert format_memory(1.5 * 2**30) == "1.5GiB"
    assert format_memory(2 * 2**30) == "2GiB"


def test_progress_line_of_a_task_stopped_over_its_memory_limit() -> None:
    from planner.execution import RunStarted, TaskKey

    out = io.StringIO()
    plain = PlainProgress(out)
    key = TaskKey("1", "acct-03")
    limit = 512 * 2**20
    for event in (
        RunStarted("r1", {"1": 1}, 1),
        TaskStarted(key, 1),
        TaskRetrying(key, 1, AttemptStatus.FAILED, 0.5, 143, "memory", 2.0, limit),
        TaskStarted(key, 2),
        TaskFinished(key, 2, AttemptStatus.FAILED, 0.4, 137, "memory", limit),
    ):
        plain.on_event(event)
    lines = [re.sub(r"^\[\s*[\d.]+s\] ", "", x) for x in out.getvalue().splitlines()]
    assert lines == [
        "1[acct-03]: failed (memory limit 512MiB), retry 2 in 2.0s",
        "1[acct-03] attempt 2: failed (memory limit 512MiB)",
    ]
