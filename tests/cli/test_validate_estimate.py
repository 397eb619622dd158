"""``planner validate`` with a history: the run estimate comes from the service layer, and
a missing history is neither created nor required."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from planner.cli import main

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)

Write = Callable[..., Path]


def record(url: str, runs: int) -> None:
    """``runs`` finished runs of pipeline ``p`` (step ``a`` 300 s, then ``b`` 100 s)."""
    from planner.history import AttemptOutcome, AttemptStart, HistoryStore

    with HistoryStore(url) as store:
        for r in range(runs):
            clock = T0 + timedelta(days=r)
            store.create_run(run_id=f"r{r}", pipeline="p", started_at=clock, concurrency=1)
            for step, seconds in (("a", 300.0), ("b", 100.0)):
                attempt = store.start_attempt(
                    AttemptStart(
                        run_id=f"r{r}",
                        pipeline="p",
                        step=step,
                        account=None,
                        attempt=1,
                        quantity=0.0,
                        params={},
                        n_accounts=0,
                        concurrency=1,
                        host="test",
                        started_at=clock,
                    )
                )
                clock += timedelta(seconds=seconds)
                store.finish_attempt(
                    attempt,
                    AttemptOutcome(status="succeeded", finished_at=clock, duration_s=seconds),
                )
            store.finish_run(f"r{r}", "succeeded", clock)


def test_estimate_from_the_history(
    write_pipeline: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def validate(*args: str) -> tuple[int, str, str]:
        code = main(["validate", str(path), *args])
        out, err = capsys.readouterr()
        return code, out, err

    data = {
        "name": "p",
        "state_dir": str(tmp_path / "state"),
        "steps": [
            {"id": "a", "command": ["true"]},
            {"id": "b", "command": ["true"], "depends_on": "a"},
        ],
    }
    path = write_pipeline(data)
    db = ("--db", f"sqlite:///{tmp_path / 'h.db'}", "--models", str(tmp_path / "models"))
    code, out, err = validate(*db)
    assert code == 0, err
    assert "  estimate: no history yet" in out
    assert not (tmp_path / "h.db").exists()  # validating creates no history
    record(f"sqlite:///{tmp_path / 'h.db'}", 4)
    code, out, err = validate(*db)
    assert code == 0, err
    assert "    a | b\n" in out
    assert "  estimated run: 6m 40s" in out  # 300 s + 100 s, one after the other
    assert "no history yet" not in out
    code, out, _ = validate(*db, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["levels"] == [["a"], ["b"]]
    assert doc["estimate"]["predicted_s"] == 400.0
    assert doc["estimate"]["critical_path"] == ["a", "b"]
