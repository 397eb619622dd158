"""A history made by real runs for the dashboard's tests (service documents, API, pages).

A pytest plugin (listed in tests/conftest.py): the session fixture ``dashboard_history``
builds it once. Pipeline ``tiny`` (accounts a1..a3, concurrency 2): ``prep`` per account
sleeps ``quantity x 0.02`` s, ``work`` per account sleeps as long and fails once for a2 in
the first run (it prints ``boom a2`` on stderr, then is retried), ``sum`` sleeps 0.05 s.
It runs four times with its quantities scaled; its third run starts while a run of
pipeline ``other`` (one 1.5 s task) holds that pipeline, so the two overlap, and the
daemon's word for it is recorded: a deferred start of ``other`` and a refused start of
``tiny``. Then: a ``scheduled`` decision with tiny's next start, a daemon leading tiny (for
an hour), two alerts about tiny's last run (one delivered to ``log``, one failed on
``webhook``), and a model trained on tiny's attempts (live in ``models``).

``sleepy_pipeline(folder, tasks, seconds)`` writes a pipeline of sleeping tasks, for the
tests that watch a run while it runs.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from planner.config import Pipeline, load_pipeline
from planner.execution import RunRequest
from planner.history import LeaseOwner
from planner.service import Instance
from planner.service.demo import scaled
from planner.service.running import prepare_run
from planner.service.scheduling import active_run, deferred, record, refused

#: sleeps quantity x 0.02 s (the account named in argv[3], if any: three times that)
SLEEP = (
    "import sys, time; q, a, slow = float(sys.argv[1]), sys.argv[2], sys.argv[3]; "
    "time.sleep(q * (0.06 if a == slow else 0.02))"
)
FLAKY = (
    "import os, sys, time; q, a, d = float(sys.argv[1]), sys.argv[2], sys.argv[3]; "
    "time.sleep(q * 0.02); flag = os.path.join(d, 'failed-' + a); "
    "first = a == 'a2' and not os.path.exists(flag); "
    "first and open(flag, 'w').close(); first and print('boom ' + a, file=sys.stderr); "
    "sys.exit(1 if first else 0)"
)
SCALES = (0.6, 1.0, 1.4, 1.0)
OVERLAPPING_RUN = 2  # the index of tiny's run that overlaps other's
DAEMON = LeaseOwner("daemon-test", "host-test", 4242)


@dataclass(frozen=True)
class DashboardHistory:
    """Where the history and models are, the pipeline files, and the run ids."""

    url: str
    models: Path
    tiny: Path
    other: Path
    tiny_runs: tuple[str, ...]  # oldest first
    other_run: str
    model_id: str

    def instance(self) -> Instance:
        from planner.history import HistoryStore

        return Instance(HistoryStore(self.url), self.models)


def write_pipelines(
    folder: Path, *, accounts: int = 3, slow: str = "", other_s: float = 1.5
) -> tuple[Path, Path]:
    """``tiny`` (accounts a1..a<accounts>; ``slow``: an account whose ``prep`` takes three
    times as long) and ``other`` (one task of ``other_s`` seconds) in ``folder``."""
    state = folder / "state"
    py = sys.executable
    tiny = {
        "name": "tiny",
        "accounts": [f"a{i}" for i in range(1, accounts + 1)],
        "state_dir": str(state),
        "concurrency": {"max": 2},
        "retry_policies": {
            "again": {"on": {"default": {"max_retries": 1, "backoff": "fixed", "base": "0.05s"}}}
        },
        "steps": [
            {
                "id": "prep",
                "per_account": True,
                "quantity": 5,
                "command": [py, "-c", SLEEP, "{quantity}", "{account}", slow],
            },
            {
                "id": "work",
                "per_account": True,
                "depends_on": ["prep"],
                "quantity": 5,
                "retry": "again",
                "command": [py, "-c", FLAKY, "{quantity}", "{account}", str(folder)],
            },
            {
                "id": "sum",
                "depends_on": ["work"],
                "command": [py, "-c", "import time; time.sleep(0.05)"],
            },
        ],
    }
    other = {
        "name": "other",
        "state_dir": str(state),
        "concurrency": {"max": 1},
        "steps": [{"id": "long", "command": [py, "-c", f"import time; time.sleep({other_s})"]}],
    }
    paths = folder / "tiny.yaml", folder / "other.yaml"
    for path, raw in zip(paths, (tiny, other), strict=True):
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return paths


def sleepy_pipeline(
    folder: Path, name: str = "sleepy", tasks: int = 3, seconds: float = 2.0
) -> Path:
    """A pipeline of ``tasks`` tasks of one step, each sleeping ``seconds``, one at a time,
    its history in ``folder/state/history.db``."""
    py = sys.executable
    raw = {
        "name": name,
        "accounts": [f"s{i}" for i in range(1, tasks + 1)],
        "state_dir": str(folder / "state"),
        "concurrency": {"max": 1},
        "steps": [
            {
                "id": "nap",
                "per_account": True,
                "command": [py, "-c", f"import time; time.sleep({seconds})"],
            }
        ],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def run_once(pipeline: Pipeline, url: str, models: Path | None = None) -> str:
    """One run of ``pipeline`` through the service layer; its id."""
    with Instance.for_pipeline(pipeline, db=url, models=models) as instance:
        outcome = prepare_run(instance, pipeline, RunRequest()).execute()
    return outcome.result.run_id


def overlapping_runs(
    tiny: Pipeline, other: Pipeline, url: str, models: Path | None = None
) -> tuple[str, str]:
    """A run of ``other`` and, while it holds its pipeline, the daemon's deferral of it, a
    refusal of ``tiny``, and a run of ``tiny``."""
    other_ids: list[str] = []
    thread = threading.Thread(target=lambda: other_ids.append(run_once(other, url, models)))
    thread.start()
    with Instance.for_pipeline(other, db=url, models=models) as instance:
        deadline = time.monotonic() + 20
        while (holder := active_run(instance, "other")) is None:
            assert time.monotonic() < deadline, "the run of other never took its lease"
            time.sleep(0.02)
        later = deferred(other, holder, now=datetime.now(UTC))
        record(
            instance,
            "other",
            later.kind,
            later.reason,
            run_id=later.run_id,
            next_start=later.at,
            interval_s=later.interval_s,
            detail=later.detail,
        )
        no = refused(tiny, "bad pipeline file", now=datetime.now(UTC))
        record(instance, "tiny", no.kind, no.reason, next_start=no.at, interval_s=no.interval_s)
    run_id = run_once(tiny, url, models)
    thread.join()
    return run_id, other_ids[0]


def _daemon_and_alerts(instance: Instance, last_run: str) -> None:
    store, now = instance.store, datetime.now(UTC)
    store.record_decision(
        "tiny",
        "scheduled",
        now,
        "predicted: bound 1.2s x 1.1 = 1.3s",
        next_start=now + timedelta(hours=1),
        interval_s=3600.0,
        owner_id=DAEMON.owner_id,
        host=DAEMON.host,
    )
    assert store.acquire_leader("tiny", DAEMON, 3600.0, now).acquired
    late = store.record_alert(
        pipeline="tiny",
        level="warning",
        kind="task_late",
        at=now,
        text="prep a3 running long",
        run_id=last_run,
        step="prep",
        account="a3",
        elapsed_s=0.3,
        predicted_s=0.2,
        bound_s=0.25,
        sinks=("log", "webhook"),
    )
    store.update_delivery(late, "log", status="sent", attempts=1, sent_at=now)
    store.update_delivery(
        late, "webhook", status="failed", attempts=3, last_error="connection refused"
    )
    store.record_alert(
        pipeline="tiny",
        level="critical",
        kind="run_late",
        at=now + timedelta(seconds=1),
        text="run past its bound",
        run_id=last_run,
        sinks=("log",),
    )


@pytest.fixture(scope="session")
def dashboard_history(tmp_path_factory: pytest.TempPathFactory) -> DashboardHistory:
    from planner.service.training import train

    folder = tmp_path_factory.mktemp("dashboard-history")
    tiny_file, other_file = write_pipelines(folder)
    tiny, other = load_pipeline(tiny_file), load_pipeline(other_file)
    url = f"sqlite:///{folder / 'state' / 'history.db'}"
    models = folder / "models"
    runs: list[str] = []
    other_run = ""
    for index, scale in enumerate(SCALES):
        if index == OVERLAPPING_RUN:
            run_id, other_run = overlapping_runs(scaled(tiny, scale), other, url, models)
            runs.append(run_id)
        else:
            runs.append(run_once(scaled(tiny, scale), url, models))
    with Instance.for_pipeline(tiny, db=url, models=models) as instance:
        (result,) = train(instance, "tiny")
        _daemon_and_alerts(instance, runs[-1])
    return DashboardHistory(
        url, models, tiny_file, other_file, tuple(runs), other_run, result.current_id
    )
