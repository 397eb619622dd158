"""The daemon driven tick by tick: a fake clock, a launcher that records runs on it in the
real history (SQLite), and a timer that only remembers what was scheduled."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.clock import FakeClock
from planner.daemon.children import RunSpec, TrainSpec
from planner.daemon.core import Daemon
from planner.daemon.entries import DaemonSettings, load_entries
from planner.daemon.logs import DecisionLogger
from planner.history import AttemptOutcome, AttemptStart, HistoryStore, LeaseOwner
from planner.service import Instance
from planner.service.machine import FixedMachine, MachineState

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def pipeline_yaml(path: Path, **schedule: Any) -> Path:
    """A one-step pipeline (cadence 2 s, predicted) written to ``path``."""
    data = {
        "name": "grow",
        "schedule": {"cadence": "2s", "policy": "predicted", **schedule},
        "concurrency": {"max": 1},
        "steps": [{"id": "work", "command": ["true"]}],
    }
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class FinishedChild:
    """A child that has already exited."""

    code: int = 0
    pid: int = 1

    def poll(self) -> int | None:
        return self.code

    def wait(self, timeout: float | None = None) -> int:
        return self.code

    def send_signal(self, sig: int) -> None:
        pass


@dataclass
class FakeRuns:
    """Starts 'runs' that take ``durations[i]`` seconds of the fake clock each: each is a
    run row with one succeeded attempt, written through the real store."""

    store: HistoryStore
    clock: FakeClock
    durations: list[float]
    started: list[str] = field(default_factory=list)
    exit_code: int = 0

    def start_run(self, spec: RunSpec) -> FinishedChild:
        duration = self.durations[min(len(self.started), len(self.durations) - 1)]
        start = self.clock.now()
        self.store.create_run(
            run_id=spec.run_id, pipeline="grow", started_at=start, concurrency=1, host="test"
        )
        attempt = self.store.start_attempt(
            AttemptStart(
                run_id=spec.run_id,
                pipeline="grow",
                step="work",
                account=None,
                attempt=1,
                quantity=None,
                params={},
                n_accounts=0,
                concurrency=1,
                host="test",
                started_at=start,
            )
        )
        self.clock.advance(duration)
        self.store.finish_attempt(
            attempt,
            AttemptOutcome(status="succeeded", finished_at=self.clock.now(), duration_s=duration),
        )
        self.store.finish_run(spec.run_id, "succeeded", self.clock.now())
        self.started.append(spec.run_id)
        return FinishedChild(self.exit_code)

    def start_training(self, spec: TrainSpec) -> FinishedChild:
        spec.output_file.parent.mkdir(parents=True, exist_ok=True)
        spec.output_file.write_text('{"model_id": "m1", "rows": {"train": 4, "test": 1}}')
        return FinishedChild(0)


@dataclass
class RecordingTimer:
    """The daemon's timer, reduced to what was last scheduled per pipeline."""

    at: dict[str, datetime] = field(default_factory=dict)

    def schedule(self, name: str, at: datetime) -> None:
        self.at[name] = at

    def unschedule(self, name: str) -> None:
        self.at.pop(name, None)

    def scheduled(self, name: str) -> datetime | None:
        return self.at.get(name)


@dataclass
class Rig:
    daemon: Daemon
    clock: FakeClock
    store: HistoryStore
    runs: FakeRuns
    timer: RecordingTimer
    out: io.StringIO

    def step(self) -> datetime:
        """Move the clock to the next scheduled start and handle it; returns that start."""
        at = self.timer.at["grow"]
        if at > self.clock.now():
            self.clock.advance((at - self.clock.now()).total_seconds())
        self.daemon.due("grow")
        return at

    def decisions(self, kind: str) -> list[Any]:
        return list(reversed(self.store.decisions("grow", kinds=[kind])))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``rig(durations, **schedule)``: a daemon on a fake clock and a fresh history."""
    made: list[Rig] = []

    def make(durations: Sequence[float], **schedule: Any) -> Rig:
        clock = FakeClock(T0)
        url = f"sqlite:///{tmp_path / 'history.db'}"
        store = HistoryStore(url, clock=clock)
        instance = Instance(
            store,
            tmp_path / "models",
            clock=clock,
            machine=FixedMachine(MachineState(cpu_count=2, free_memory_mb=8000.0)),
        )
        file = pipeline_yaml(tmp_path / "grow.yaml", **schedule)
        entries, _ = load_entries([file], clock.now(), db=url, models=tmp_path / "models")
        runs = FakeRuns(store, clock, list(durations))
        out = io.StringIO()
        daemon = Daemon(
            instance,
            entries,
            owner=LeaseOwner.here(),
            launcher=runs,
            logger=DecisionLogger(out),
            settings=DaemonSettings(leader_ttl_s=30.0, retrain_cron=None),
        )
        timer = RecordingTimer()
        daemon.timer = timer
        rig = Rig(daemon, clock, store, runs, timer, out)
        made.append(rig)
        return rig

    yield make
    for r in made:
        r.daemon.close()
        r.store.close()


def later(at: datetime, seconds: float) -> datetime:
    return at + timedelta(seconds=seconds)
