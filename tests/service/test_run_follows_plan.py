"""A run follows its plan: longest tasks first, the plan stored with the run's id,
``timeout: auto`` from the calibrated bound, and the plan's ``auto`` concurrency.

Real runs (real subprocesses, a real SQLite history) through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.cli import main
from planner.history import HistoryStore

SLEEP_JOB = """\
import json, sys, time
from pathlib import Path
seconds = json.loads(Path(sys.argv[1]).read_text())
time.sleep(seconds.get(sys.argv[2], 0.05))
"""


def _pipeline(tmp_path: Path, durations: dict[str, float], **extra: Any) -> Path:
    """A pipeline of one per-account step whose task for account A sleeps durations[A]."""
    (tmp_path / "sleep.py").write_text(SLEEP_JOB, encoding="utf-8")
    (tmp_path / "durations.json").write_text(json.dumps(durations), encoding="utf-8")
    step = {
        "id": "work",
        "command": [sys.executable, "sleep.py", "durations.json", "{account}"],
        "per_account": True,
        **extra.pop("step", {}),
    }
    raw = {
        "name": "follow",
        "accounts": list(durations),
        "state_dir": str(tmp_path / "state"),
        "steps": [step],
        **extra,
    }
    path = tmp_path / "follow.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _run_json(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["run", str(path), "--json", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc: dict[str, Any] = json.loads(captured.out)
    return doc


def _start_order(url: str, run_id: str) -> list[str | None]:
    with HistoryStore(url) as store:
        attempts = store.attempts_for_run(run_id)
    return [a.account for a in sorted(attempts, key=lambda a: a.started_at)]


def test_longest_tasks_start_first_and_the_plan_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    durations = {"a1": 0.05, "a2": 0.6, "a3": 0.3, "a4": 0.15}
    path = _pipeline(tmp_path, durations)
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    first = _run_json(path, capsys, "--concurrency", "1")
    notes = capsys.readouterr()
    # no history: file order, and the run says so (on stderr, stdout is the document)
    assert _start_order(url, first["run"]["run_id"]) == ["a1", "a2", "a3", "a4"]
    for _ in range(2):
        _run_json(path, capsys, "--concurrency", "1")
    code = main(["run", str(path), "--concurrency", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    assert "no history" not in captured.err
    doc = json.loads(captured.out)
    run = doc["run"]
    assert _start_order(url, run["run_id"]) == ["a2", "a3", "a4", "a1"]
    assert run["concurrency"] == 1
    # the plan stored with the run's id: predicted ~ the sum of the sleeps at concurrency 1
    assert run["predicted_s"] == pytest.approx(sum(durations.values()), rel=0.5)
    assert run["bound_s"] >= run["predicted_s"]
    with HistoryStore(url) as store:
        own = store.run_predictions(run_ids=[run["run_id"]])
        plans = [p for p in store.plans("follow") if p.run_id == run["run_id"]]
    assert own[run["run_id"]] == pytest.approx((run["predicted_s"], run["bound_s"]), abs=1e-3)
    assert len(plans) == 1
    tasks = {t["account"]: t for t in plans[0].document["tasks"]}
    assert max(tasks, key=lambda a: tasks[a]["predicted_s"]) == "a2"
    # the same figures in the runs list
    assert main(["runs", "--pipeline", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["runs"]
    assert listed[0]["run_id"] == run["run_id"]
    assert listed[0]["predicted_s"] == run["predicted_s"]
    assert listed[0]["bound_s"] == run["bound_s"]
    assert listed[0]["concurrency"] == 1
    assert notes is not None


def test_first_run_says_tasks_have_no_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(tmp_path, {"a1": 0.05, "a2": 0.05}, step={"timeout": "auto"})
    code = main(["run", str(path)])
    captured = capsys.readouterr()
    assert code == 0
    assert (
        "planner: note: no history for pipeline 'follow' yet: every task is planned at the "
        "default 60 s until its first run is recorded" in captured.err
    )
    assert (
        "planner: note: timeout: auto: 2 task(s) of step(s) work have no history and run "
        "without a timeout" in captured.err
    )
    assert captured.err.count("no history") == 2  # each said once, not per task


def test_timeout_auto_stops_a_hanging_task_near_its_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    durations = {"a1": 0.1, "a2": 0.1}
    path = _pipeline(
        tmp_path,
        durations,
        step={"timeout": "auto"},
        auto_timeout={"factor": 3, "floor": "1.5s"},
    )
    for _ in range(3):
        _run_json(path, capsys)
    (tmp_path / "durations.json").write_text(json.dumps({"a1": 0.1, "a2": 60}), encoding="utf-8")
    code = main(["run", str(path), "--json"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    doc = json.loads(captured.out)
    hung = [a for a in doc["attempts"] if a["account"] == "a2"]
    assert [a["status"] for a in hung] == ["timed_out"]
    assert hung[0]["error_class"] == "timeout"
    # bound x 3 of a 0.1 s task is below the floor: stopped at the 1.5 s floor
    assert 1.4 <= hung[0]["duration_s"] < 6.0
    assert [a["status"] for a in doc["attempts"] if a["account"] == "a1"] == ["succeeded"]


def test_plan_stores_nothing_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(tmp_path, {"a1": 0.05})
    _run_json(path, capsys)
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    with HistoryStore(url) as store:
        before = len(store.plans("follow"))
    assert main(["plan", str(path), "--json"]) == 0
    capsys.readouterr()
    with HistoryStore(url) as store:
        assert len(store.plans("follow")) == before
    assert main(["plan", str(path), "--save"]) == 0
    assert "plan stored in" in capsys.readouterr().out
    with HistoryStore(url) as store:
        stored = store.plans("follow")
    assert len(stored) == before + 1
    assert stored[0].run_id is None


def test_auto_concurrency_of_a_run_is_the_plans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Waiting-bound tasks: ``auto`` is the same number in ``plan`` and in the run, and
    more than cores - 1 on this machine (they use a small share of a core)."""
    accounts = {f"a{i}": 0.4 for i in range(6)}
    path = _pipeline(tmp_path, accounts)
    for _ in range(2):
        _run_json(path, capsys)
    assert main(["plan", str(path), "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    doc = _run_json(path, capsys)
    assert doc["run"]["concurrency"] == planned["concurrency"]
    assert planned["concurrency"] == 6  # capped by the widest level: 6 tasks


def test_the_whole_loop_from_a_fresh_process(tmp_path: Path) -> None:
    """``planner run`` as a user runs it: the plan line, the result against the plan."""
    path = _pipeline(tmp_path, {"a1": 0.05, "a2": 0.2})

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "planner", "run", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )

    run()
    proc = run()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("run ") and ": predicted " in lines[0]
    assert "for 2 task(s) at concurrency" in lines[0]
    summary = next(line for line in lines if ": succeeded in " in line)
    assert ": succeeded in " in summary and "(predicted " in summary
    assert "2 succeeded" in summary
    assert any(line.startswith("details: planner show ") for line in lines)
