"""Fixtures for planning tests: a pipeline file and a real SQLite history of its runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def pipeline_data(**schedule: Any) -> dict[str, Any]:
    """A two-step pipeline: ``collect`` per account, then ``aggregate`` once."""
    return {
        "name": "nightly",
        "accounts": ["a1", "a2", "a3", "a4"],
        "schedule": {"cadence": "1h", "policy": "predicted", **schedule},
        "concurrency": {"max": 2},
        "steps": [
            {"id": "1", "command": ["true"], "per_account": True, "quantity": 10},
            {"id": "2", "command": ["true"], "depends_on": ["1"]},
        ],
    }


#: Recorded duration of each task: ``collect`` per account, ``aggregate``.
DURATIONS = {("1", "a1"): 600.0, ("1", "a2"): 300.0, ("1", "a3"): 300.0, ("1", "a4"): 200.0}
AGGREGATE_S = 100.0


def record_runs(url: str, n_runs: int, *, scale: Callable[[int], float] = lambda _: 1.0) -> None:
    """Write ``n_runs`` finished runs of the pipeline through the real history store."""
    from planner.history import AttemptOutcome, AttemptStart, HistoryStore

    with HistoryStore(url) as store:
        for r in range(n_runs):
            start = T0 + timedelta(days=r)
            run_id = f"run-{r}"
            store.create_run(run_id=run_id, pipeline="nightly", started_at=start, concurrency=2)
            clock = start
            tasks = [(s, a, d * scale(r)) for (s, a), d in DURATIONS.items()]
            tasks.append(("2", None, AGGREGATE_S * scale(r)))
            for step, account, duration in tasks:
                attempt = store.start_attempt(
                    AttemptStart(
                        run_id=run_id,
                        pipeline="nightly",
                        step=step,
                        account=account,
                        attempt=1,
                        quantity=10.0 if step == "1" else 0.0,
                        params={},
                        n_accounts=4,
                        concurrency=2,
                        host="test",
                        started_at=clock,
                    )
                )
                end = clock + timedelta(seconds=duration)
                store.finish_attempt(
                    attempt,
                    AttemptOutcome(
                        status="succeeded", finished_at=end, duration_s=duration, peak_rss_mb=100.0
                    ),
                )
                clock = end
            store.finish_run(run_id, "succeeded", clock)


@pytest.fixture
def history(tmp_path: Path) -> Callable[[int], str]:
    """``history(n)``: the URL of a fresh SQLite history holding ``n`` runs."""

    def make(n_runs: int, **kwargs: Any) -> str:
        url = f"sqlite:///{tmp_path / 'history.db'}"
        record_runs(url, n_runs, **kwargs)
        return url

    return make


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    """The pipeline of :func:`pipeline_data` as a YAML file, its state dir in ``tmp_path``."""
    import yaml

    path = tmp_path / "nightly.yaml"
    data = pipeline_data()
    data["state_dir"] = str(tmp_path / "state")
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
