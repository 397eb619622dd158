"""A small history made by real runs, once per session, for the analysis tests.

Pipeline ``tiny`` (accounts a1..a4, concurrency 2): ``prep`` per account sleeps
``quantity x 0.02`` s (account a3 three times that: the slow account), ``work`` per account
sleeps ``quantity x 0.02`` s and fails once for a2 in the first run (retried), ``sum``
sleeps 0.05 s. It runs four times with its quantities scaled; its third run starts while a
run of pipeline ``other`` (one 2 s task) holds that pipeline, so the two overlap, and the
daemon's word for it is recorded: a deferred start of ``other`` (found through
``service.scheduling``, as the daemon finds it) and a refused start of ``tiny``.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from planner.config import Pipeline, load_pipeline
from planner.execution import RunRequest
from planner.service import Instance
from planner.service.demo import scaled
from planner.service.running import prepare_run
from planner.service.scheduling import active_run, deferred, record, refused

SLEEP = (
    "import sys, time; q, a = float(sys.argv[1]), sys.argv[2]; "
    "time.sleep(q * (0.06 if a == 'a3' else 0.02))"
)
FLAKY = (
    "import os, sys, time; q, a, d = float(sys.argv[1]), sys.argv[2], sys.argv[3]; "
    "time.sleep(q * 0.02); flag = os.path.join(d, 'failed-' + a); "
    "first = a == 'a2' and not os.path.exists(flag); "
    "first and open(flag, 'w').close(); sys.exit(1 if first else 0)"
)
SCALES = (0.6, 1.0, 1.4, 1.0)
OVERLAPPING_RUN = 2  # the index of tiny's run that overlaps other's


@dataclass(frozen=True)
class SmallHistory:
    """Where the history is, the two pipelines, and tiny's run ids (oldest first)."""

    url: str
    tiny: Path
    other: Path
    tiny_runs: tuple[str, ...]
    other_run: str


def _write(folder: Path) -> tuple[Path, Path]:
    state = folder / "state"
    py = sys.executable
    tiny = {
        "name": "tiny",
        "accounts": ["a1", "a2", "a3", "a4"],
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
                "command": [py, "-c", SLEEP, "{quantity}", "{account}"],
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
        "steps": [{"id": "long", "command": [py, "-c", "import time; time.sleep(2.0)"]}],
    }
    paths = folder / "tiny.yaml", folder / "other.yaml"
    for path, raw in zip(paths, (tiny, other), strict=True):
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return paths


def _run(pipeline: Pipeline, url: str) -> str:
    with Instance.for_pipeline(pipeline, db=url) as instance:
        outcome = prepare_run(instance, pipeline, RunRequest()).execute()
    return outcome.result.run_id


@pytest.fixture(scope="session")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> SmallHistory:
    folder = tmp_path_factory.mktemp("analysis-history")
    tiny_file, other_file = _write(folder)
    tiny, other = load_pipeline(tiny_file), load_pipeline(other_file)
    url = f"sqlite:///{folder / 'state' / 'history.db'}"
    runs: list[str] = []
    other_ids: list[str] = []
    for index, scale in enumerate(SCALES):
        if index != OVERLAPPING_RUN:
            runs.append(_run(scaled(tiny, scale), url))
            continue
        thread = threading.Thread(target=lambda: other_ids.append(_run(other, url)))
        thread.start()
        with Instance.for_pipeline(other, db=url) as instance:
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
        runs.append(_run(scaled(tiny, scale), url))
        thread.join()
    with Instance.for_pipeline(tiny, db=url) as instance:
        instance.store.record_alert(
            pipeline="tiny",
            level="warning",
            kind="task_late",
            at=datetime.now(UTC),
            text="prep a3 running long",
            run_id=runs[-1],
            step="prep",
            account="a3",
            elapsed_s=0.3,
            predicted_s=0.2,
            bound_s=0.25,
            sinks=("log",),
        )
    return SmallHistory(url, tiny_file, other_file, tuple(runs), other_ids[0])
