"""``planner runs`` / ``planner show`` read the store: task counts per run, in one read."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from planner.cli import main
from planner.history import AttemptOutcome, HistoryStore

from .conftest import T0
from .test_store import start


def test_runs_and_show_count_each_run_by_its_last_attempts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    with HistoryStore(url) as store:
        for number, run_id in enumerate(("r1", "r2", "r3")):
            store.create_run(run_id=run_id, pipeline="nightly", started_at=T0 + timedelta(number))
        failed = store.start_attempt(start(run_id="r1"))
        store.finish_attempt(failed, AttemptOutcome("failed", T0, 1.0))
        retried = store.start_attempt(start(run_id="r1", attempt=2))
        store.finish_attempt(retried, AttemptOutcome("succeeded", T0, 1.0))
        store.start_attempt(start(run_id="r2", account="a1"))
        store.record_skipped(start(run_id="r2", step="2"), "1 failed")
    assert main(["runs", "--db", url, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert {r["run_id"]: r["tasks"] for r in runs} == {
        "r3": {},
        "r2": {"running": 1, "skipped": 1},
        "r1": {"succeeded": 1},
    }
    assert [r["run_id"] for r in runs] == ["r3", "r2", "r1"]
    assert main(["runs", "--db", url, "--limit", "1", "--json"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["r3"]
    assert main(["show", "r1", "--db", url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run"]["tasks"] == {"succeeded": 1}
    assert [(a["attempt"], a["status"]) for a in shown["attempts"]] == [
        (1, "failed"), (2, "succeeded"),
    ]  # fmt: skip
