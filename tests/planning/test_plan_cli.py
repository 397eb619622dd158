"""``planner plan`` and ``planner simulate`` on a real SQLite history written by the store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from planner.cli import main

PLAN_KEYS = {
    "pipeline",
    "concurrency",
    "concurrency_rule",
    "cpu_per_task",
    "run",
    "steps",
    "tasks",
    "interval_s",
    "next_start",
    "what_if",
    "recommendations",
    "warnings",
    "contention",
    "contention_warnings",
    "adaptive",
}


T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # the first recorded run (see conftest)


def test_plan_json_on_real_history(
    pipeline_file: Path, history: Callable[..., str], tmp_path: Path
) -> None:
    from planner.history import HistoryStore

    url = history(5)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "planner", "plan", str(pipeline_file), "--db", url),
            *("--models", str(tmp_path / "models"), "--concurrency", "2", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == PLAN_KEYS
    assert doc["pipeline"] == "nightly"
    assert doc["concurrency"] == 2
    assert doc["run"]["critical_path"] == ["1", "2"]
    tasks = {(t["step"], t["account"]): t for t in doc["tasks"]}
    assert set(tasks) == {("1", "a1"), ("1", "a2"), ("1", "a3"), ("1", "a4"), ("2", None)}
    # every task has run 5 times with the same duration: the estimates learn it
    assert tasks[("1", "a1")]["predicted_s"] == pytest.approx(600.0, rel=0.05)
    assert all(t["source"] != "default" for t in tasks.values())
    assert all(t["bound_s"] >= t["predicted_s"] for t in tasks.values())
    # LPT on 2 slots: 600 | 300 + 300, then 200 -> makespan 800, then aggregate 100
    assert doc["steps"][0]["makespan_s"] == pytest.approx(800.0, rel=0.05)
    assert doc["steps"][0]["lower_bound_s"] == pytest.approx(700.0, rel=0.05)
    assert doc["run"]["predicted_s"] == pytest.approx(900.0, rel=0.05)
    assert doc["run"]["bound_s"] >= doc["run"]["predicted_s"]
    assert doc["interval_s"] == pytest.approx(3600.0)  # the 1 h cadence exceeds the bound
    assert {tuple(sorted(w)) for w in doc["what_if"]} == {
        ("concurrency", "makespan_s", "memory_mb", "without_contention_s")
    }
    # every attempt ran at concurrency 2: one level, no curve, and the plan says so
    assert doc["contention"] == {"1": None, "2": None}
    assert doc["contention_warnings"] == [
        "step 1: not enough history at different concurrencies to tell how it scales "
        "(seen at 1 level: 2 (20 attempts)); using the CPU rule",
        "step 2: not enough history at different concurrencies to tell how it scales "
        "(seen at 1 level: 2 (5 attempts)); using the CPU rule",
    ]
    assert all(w["without_contention_s"] is None for w in doc["what_if"])
    assert all(isinstance(r["text"], str) for r in doc["recommendations"])
    with HistoryStore(url) as store:
        assert store.plans("nightly") == []  # planning stores nothing unless asked
    code = main(["plan", str(pipeline_file), "--db", url, "--models", str(tmp_path / "models"),
                 "--concurrency", "2", "--save", "--json"])  # fmt: skip
    assert code == 0
    with HistoryStore(url) as store:
        stored = store.plans("nightly")
    assert len(stored) == 1 and stored[0].run_id is None  # a plan by hand, tied to no run
    assert stored[0].predicted_s == pytest.approx(doc["run"]["predicted_s"])


def test_plan_human_output(
    pipeline_file: Path,
    history: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = history(3)
    code = main(["plan", str(pipeline_file), "--db", url, "--models", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert code == 0
    assert "critical path: 1 -> 2" in out
    assert "next start:" in out
    assert "what if" in out


def test_plan_unknown_account_is_bad_input(
    pipeline_file: Path, history: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = history(1)
    code = main(["plan", str(pipeline_file), "--db", url, "--accounts", "a1,zz", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.strip() == "planner: error: --accounts: unknown account(s): zz"


def test_simulate_json(history: Callable[..., str], capsys: pytest.CaptureFixture[str]) -> None:
    url = history(8, scale=lambda r: 1.0 + 0.05 * r)
    code = main(["simulate", "--pipeline", "nightly", "--db", url, "--cadence", "auto", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["series"] == 1
    assert set(doc["policies"]) == {"fixed", "avg10_x1.2", "planner", "oracle"}
    assert doc["policies"]["oracle"]["runs"] == 5  # the first 30 % (3 of 8 runs) trains
    assert doc["policies"]["oracle"]["collisions"] == 0
    code = main(["simulate", "--pipeline", "nightly", "--db", url, "--by", "step", "--json"])
    assert json.loads(capsys.readouterr().out)["series"] == 2


def test_simulate_unknown_pipeline_is_bad_input(
    history: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--pipeline", "nope", "--db", history(1)])
    assert code == 2
    assert "no finished attempts of pipeline 'nope'" in capsys.readouterr().err
