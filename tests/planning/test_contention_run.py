"""Real runs of a CPU-bound step at 1, c, 2c and 4c tasks at once (c: the cores, at most
4): on this machine its tasks slow down past the cores, ``planner plan`` fits that from the
history, its what-if includes the slowdown, and the text says how far the step gains."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from planner.cli import main
from planner.history import HistoryStore

#: Each task computes for this many CPU seconds (its process's own time).
CPU_S = 0.15
JOB = f"""\
import time
end = time.process_time() + {CPU_S}
while time.process_time() < end:
    pass
"""


def _levels() -> tuple[int, ...]:
    cores = os.cpu_count() or 1
    if cores > 4:
        pytest.skip(f"{cores} cores: 4 x cores CPU-bound tasks would take too long here")
    return tuple(sorted({1, cores, 2 * cores, 4 * cores}))


def _pipeline(tmp_path: Path, accounts: int) -> Path:
    (tmp_path / "job.py").write_text(JOB, encoding="utf-8")
    raw = {
        "name": "crunch",
        "accounts": [f"a{i}" for i in range(accounts)],
        "state_dir": str(tmp_path / "state"),
        "concurrency": {"max": "auto"},
        "steps": [
            {
                "id": "crunch",
                "command": [sys.executable, str(tmp_path / "job.py")],
                "per_account": True,
            }
        ],
    }
    path = tmp_path / "crunch.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_cpu_bound_runs_show_their_contention_in_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    levels = _levels()
    path = _pipeline(tmp_path, accounts=max(levels))
    # the widest first: the last two runs (at 1 and c) are what the baselines average
    for level in reversed(levels):
        assert main(["run", str(path), "--concurrency", str(level), "--quiet"]) == 0
    capsys.readouterr()
    with HistoryStore(f"sqlite:///{tmp_path / 'state' / 'history.db'}") as store:
        took = {
            r.concurrency: (r.finished_at - r.started_at).total_seconds()
            for r in store.list_runs("crunch")
            if r.finished_at is not None
        }

    assert main(["plan", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    curve = doc["contention"]["crunch"]
    assert curve is not None, doc["contention_warnings"]
    assert curve["levels"] == list(levels)
    top = max(levels)
    # past the cores every task takes longer: at 4c each is about 4x as long as alone
    assert curve["observed"][-1] > 1.5 * curve["observed"][0]
    assert curve["sigma"] + curve["kappa"] > 0 and curve["knee"] is not None
    row = next(w for w in doc["what_if"] if w["concurrency"] == top)
    # the slowdown makes the widest run longer than the plan without it
    assert row["makespan_s"] > 1.3 * row["without_contention_s"]
    # and closer to what the run at that count took
    assert abs(row["makespan_s"] - took[top]) < abs(row["without_contention_s"] - took[top])

    assert main(["plan", str(path)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"step crunch gains up to about {curve['knee']} at once" in text
    assert f"sigma {curve['sigma']:g}, kappa {curve['kappa']:g}, knee {curve['knee']}" in text
