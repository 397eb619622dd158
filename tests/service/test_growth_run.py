"""The seed's story: the volume grows past anything recorded. Real runs at quantities 1 to
3, then a run at 12: its plan scales with the quantity and the run lands near it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from planner.cli import main
from planner.history import HistoryStore

JOB = """\
import sys, time
account, quantity = int(sys.argv[1][1:]), float(sys.argv[2])
time.sleep(0.05 + 0.1 * (1 + 0.2 * account) * quantity)  # a fixed part and a rate
"""
ACCOUNTS = [f"a{i}" for i in range(6)]


def _pipeline(tmp_path: Path, quantity: int) -> Path:
    (tmp_path / "job.py").write_text(JOB, encoding="utf-8")
    raw = {
        "name": "grows",
        "accounts": ACCOUNTS,
        "state_dir": str(tmp_path / "state"),
        "concurrency": {"max": 6},
        "steps": [
            {
                "id": "load",
                "command": [sys.executable, "job.py", "{account}", "{quantity}"],
                "per_account": True,
                "quantity": quantity,
            }
        ],
    }
    path = tmp_path / "grows.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_a_run_at_4x_the_largest_quantity_lands_near_its_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for quantity in (1, 2, 3, 1, 2, 3):
        assert main(["run", str(_pipeline(tmp_path, quantity)), "--quiet"]) == 0
    capsys.readouterr()
    path = _pipeline(tmp_path, 12)
    assert main(["plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert any("quantity 12 is 4.0x the largest seen (3)" in w for w in plan["warnings"])

    assert main(["run", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    run = json.loads(captured.out)
    assert "planner: note: step load: quantity 12 is 4.0x the largest seen (3)" in captured.err
    with HistoryStore(f"sqlite:///{tmp_path / 'state' / 'history.db'}") as store:
        (stored,) = [p for p in store.plans("grows") if p.run_id == run["run"]["run_id"]]
    planned = {t["account"]: t for t in stored.document["tasks"]}
    actual = {a["account"]: a["duration_s"] for a in run["attempts"]}
    within = sum(abs(planned[a]["predicted_s"] / actual[a] - 1.0) <= 0.35 for a in ACCOUNTS)
    under = sum(actual[a] <= planned[a]["bound_s"] for a in ACCOUNTS)
    assert within >= 5, (planned, actual)
    assert under >= 5, (planned, actual)
