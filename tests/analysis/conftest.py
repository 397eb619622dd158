"""A small history made by real runs, once per session, for the analysis tests.

Pipeline ``tiny`` (accounts a1..a4, concurrency 2): ``prep`` per account sleeps
``quantity x 0.02`` s (account a3 three times that: the slow account), ``work`` per account
sleeps ``quantity x 0.02`` s and fails once for a2 in the first run (retried), ``sum``
sleeps 0.05 s. It runs four times with its quantities scaled; its third run starts while a
run of pipeline ``other`` (one 2 s task) holds that pipeline, so the two overlap, and the
daemon's word for it is recorded: a deferred start of ``other`` (found through
``service.scheduling``, as the daemon finds it) and a refused start of ``tiny``. The
pipelines and the runs are the dashboard's (``tests/dashboard_history.py``), with a fourth
account and a slow one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from planner.config import load_pipeline
from planner.service import Instance
from planner.service.demo import scaled
from tests.dashboard_history import (
    OVERLAPPING_RUN,
    SCALES,
    overlapping_runs,
    run_once,
    write_pipelines,
)


@dataclass(frozen=True)
class SmallHistory:
    """Where the history is, the two pipelines, and tiny's run ids (oldest first)."""

    url: str
    tiny: Path
    other: Path
    tiny_runs: tuple[str, ...]
    other_run: str


@pytest.fixture(scope="session")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> SmallHistory:
    folder = tmp_path_factory.mktemp("analysis-history")
    tiny_file, other_file = write_pipelines(folder, accounts=4, slow="a3", other_s=2.0)
    tiny, other = load_pipeline(tiny_file), load_pipeline(other_file)
    url = f"sqlite:///{folder / 'state' / 'history.db'}"
    runs: list[str] = []
    other_run = ""
    for index, scale in enumerate(SCALES):
        if index == OVERLAPPING_RUN:
            run_id, other_run = overlapping_runs(scaled(tiny, scale), other, url)
            runs.append(run_id)
        else:
            runs.append(run_once(scaled(tiny, scale), url))
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
    return SmallHistory(url, tiny_file, other_file, tuple(runs), other_run)
