"""``auto`` concurrency from a real history: tasks that wait run many to a core, tasks that
compute one per spare core.

Real subprocesses run by the real runner into a real SQLite history; then the predictor
reads that history and the (pure) plan sizes the concurrency for a 2-core machine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from planner.config import Pipeline, parse_pipeline, select_steps
from planner.execution import Runner, RunRequest
from planner.history import HistoryStore
from planner.learning.predictor import Predictor
from planner.planning.plan import build_plan, task_queries

ACCOUNTS = [f"a{i}" for i in range(8)]
#: Busy for 0.15 s of CPU (not of wall time: under load it takes longer, still computing).
SPIN = "import time\nend = time.process_time() + 0.15\nwhile time.process_time() < end: pass\n"


def _pipeline(tmp_path: Path) -> Pipeline:
    raw: dict[str, Any] = {
        "name": "cpu-share",
        "accounts": ACCOUNTS,
        "state_dir": str(tmp_path / "state"),
        "concurrency": {"max": "auto"},
        "steps": [
            {"id": "wait", "command": ["sleep", "0.5"], "per_account": True},
            {"id": "spin", "command": [sys.executable, "-c", SPIN], "per_account": True},
        ],
    }
    pipeline, issues = parse_pipeline(raw, base_dir=tmp_path, source=tmp_path / "p.yaml")
    assert not issues and pipeline is not None
    return pipeline


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, Path]:
    """The pipeline and a history where each step ran for its 8 accounts a few times."""
    tmp_path = tmp_path_factory.mktemp("cpu-share")
    pipeline = _pipeline(tmp_path)
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    with HistoryStore(url) as store:
        for _ in range(3):  # the sleeps side by side: 0.5 s a run
            result = Runner(pipeline, store, RunRequest(steps=["wait"], concurrency=8)).run()
            assert result.status == "succeeded"
        for _ in range(2):  # one at a time, so that each has a core to itself
            result = Runner(pipeline, store, RunRequest(steps=["spin"], concurrency=1)).run()
            assert result.status == "succeeded"
    return pipeline, tmp_path


def _plan(pipeline: Pipeline, tmp_path: Path, step: str) -> Any:
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    with HistoryStore(url) as store:
        frame = store.attempts_frame(pipeline=pipeline.name)
        predictor = Predictor.load(tmp_path / "models", pipeline.name, frame, ledger=store)
    steps = select_steps(pipeline, [step])
    queries = task_queries(pipeline, steps, concurrency=1)
    now = frame["finished_at"].max().to_pydatetime()
    estimates = predictor.predict(queries, now)
    plan = build_plan(
        pipeline,
        steps,
        queries,
        estimates,
        past_runs=[],
        now=now,
        cpu_count=2,
        free_memory_mb=4000.0,
    )
    return plan, estimates


def test_waiting_tasks_run_side_by_side_on_two_cores(recorded: tuple[Pipeline, Path]) -> None:
    plan, estimates = _plan(*recorded, "wait")
    assert all(e.source != "default" for e in estimates)  # the history was read
    assert all(e.cpu_share is not None and e.cpu_share < 0.1 for e in estimates)
    assert plan.cpu_per_task is not None and plan.cpu_per_task < 0.1
    # at most 1 / 0.1 = 10 per spare core; the 8 accounts are all that can run at once
    assert plan.concurrency == 8
    assert plan.concurrency_rule.endswith("at most 8 tasks can run at once -> 8")


def test_computing_tasks_get_one_slot_per_spare_core(recorded: tuple[Pipeline, Path]) -> None:
    plan, estimates = _plan(*recorded, "spin")
    assert all(e.cpu_share is not None and e.cpu_share > 0.5 for e in estimates)
    assert plan.concurrency == 1  # 2 cores - 1 spare core, a task busy on it
    assert "1 spare core / " in plan.concurrency_rule
