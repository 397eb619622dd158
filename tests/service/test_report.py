"""``planner report``: real runs (real subprocesses, a real SQLite history) through the
command line, then the report's document, its markdown and its plain form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from planner.cli import main
from planner.clock import FakeClock
from planner.history import HistoryStore
from planner.monitoring.alerts import BODY_KEYS
from planner.monitoring.drift import prediction_quality
from planner.service import Instance
from planner.service.monitor import planned_vs_actual
from planner.service.report import SECTIONS, build_report, trend_word
from planner.units import format_duration

JOB = """\
import json, sys, time
from pathlib import Path
spec = json.loads(Path(sys.argv[1]).read_text()).get(sys.argv[2], 0.05)
if spec == "fail":
    sys.exit(3)
time.sleep(spec)
"""


def _pipeline(tmp_path: Path, durations: dict[str, Any], **extra: Any) -> Path:
    """Step ``work`` per account (account A sleeps durations[A], or exits 3 for "fail"),
    then step ``sum`` after it (sleeps durations["sum"])."""
    (tmp_path / "job.py").write_text(JOB, encoding="utf-8")
    _durations(tmp_path, durations)
    command = [sys.executable, "job.py", "durations.json"]
    raw = {
        "name": "nightly",
        "accounts": [a for a in durations if a != "sum"],
        "state_dir": str(tmp_path / "state"),
        "steps": [
            {"id": "work", "command": [*command, "{account}"], "per_account": True},
            {"id": "sum", "command": [*command, "sum"], "depends_on": ["work"]},
        ],
        **extra,
    }
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _durations(tmp_path: Path, durations: dict[str, Any]) -> None:
    (tmp_path / "durations.json").write_text(json.dumps(durations), encoding="utf-8")


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'history.db'}"


def _run(path: Path, capsys: pytest.CaptureFixture[str], expect: int = 0) -> None:
    code = main(["run", str(path), "--quiet"])
    captured = capsys.readouterr()
    assert code == expect, captured.err


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["report", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document: dict[str, Any] = json.loads(captured.out)
    return document


def _text(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["report", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _expected_step(url: str, step: str) -> dict[str, Any]:
    """The step's figures straight from the stored attempts."""
    with HistoryStore(url) as store:
        attempts = [
            a
            for run in store.list_runs("nightly")
            for a in store.attempts_for_run(run.run_id)
            if a.step == step and a.status != "skipped"
        ]
    durations = [a.duration_s for a in attempts if a.status == "succeeded"]
    tasks = {(a.run_id, a.account): a.status for a in sorted(attempts, key=lambda a: a.attempt)}
    succeeded = sum(1 for status in tasks.values() if status == "succeeded")
    return {
        "runs": len({a.run_id for a in attempts}),
        "attempts": len(attempts),
        "tasks": len(tasks),
        "succeeded": succeeded,
        "success_rate": round(succeeded / len(tasks), 3),
        "p50_s": round(float(np.percentile(durations, 50)), 3),
        "p95_s": round(float(np.percentile(durations, 95)), 3),
    }


def test_report_of_finished_runs_in_every_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    durations: dict[str, Any] = {"a1": 0.05, "a2": 0.3, "a3": 0.15, "sum": 0.05}
    path = _pipeline(tmp_path, durations, schedule={"cadence": "1h", "quantile": 0.9})
    for _ in range(3):
        _run(path, capsys)
    _durations(tmp_path, {**durations, "a3": "fail"})
    _run(path, capsys, expect=1)  # work[a3] fails, sum is skipped
    url = _url(tmp_path)

    doc = _report(capsys, "--pipeline", str(path))
    assert list(doc)[: len(SECTIONS)] == list(SECTIONS)
    assert doc["pipeline"] == "nightly" and doc["history"] == url
    start = datetime.fromisoformat(doc["period"]["from"])
    end = datetime.fromisoformat(doc["period"]["to"])
    assert end - start == timedelta(days=7) and doc["period"]["seconds"] == 7 * 86400
    assert doc["current"] == []

    steps = {row["step"]: row for row in doc["steps"]}
    assert [row["step"] for row in doc["steps"]] == ["work", "sum"]  # the file's order
    work, total = steps["work"], steps["sum"]
    assert {k: work[k] for k in _expected_step(url, "work")} == _expected_step(url, "work")
    assert (work["runs"], work["tasks"], work["succeeded"], work["success_rate"]) == (
        4,
        12,
        11,
        0.917,
    )
    assert (total["runs"], total["tasks"], total["success_rate"]) == (3, 3, 1.0)
    assert {k: total[k] for k in _expected_step(url, "sum")} == _expected_step(url, "sum")
    # every run is in the last third of a 7-day period: no trend to tell
    assert work["trend"]["word"] is None and work["trend"]["ratio"] is None

    (prediction,) = doc["prediction"]
    assert prediction["pipeline"] == "nightly" and prediction["target"] == 0.9  # the file's
    with HistoryStore(url) as store:
        quality = prediction_quality(planned_vs_actual(store, "nightly", 4))
    assert (prediction["runs"], prediction["tasks"]) == (quality.runs, quality.tasks)
    assert prediction["mdape"] == round(quality.mdape or 0, 3)
    assert prediction["coverage"] == round(quality.coverage or 0, 3)
    assert sum(s["tasks"] for s in prediction["steps"]) == prediction["tasks"] > 0
    assert [s["step"] for s in prediction["steps"]] == ["work", "sum"]
    assert prediction["model"] is None
    assert prediction["serving"].startswith("baselines: no live model of nightly in ")

    health = doc["health"]
    assert health["cpu"]["cores"] == os.cpu_count()
    assert 0 <= health["cpu"]["percent"] <= 100 and 0 <= health["memory"]["used_percent"] <= 100
    assert health["memory"]["available_mb"] > 0 and health["disk"]["free_gb"] > 0
    assert health["disk"]["path"] == str(tmp_path / "state")
    assert health["database"] == {"url": url, "size_bytes": health["database"]["size_bytes"]}
    assert health["database"]["size_bytes"] >= (tmp_path / "state" / "history.db").stat().st_size

    # the first run had no history: the monitor said so once, stored as an alert
    kinds = [a["kind"] for a in doc["alerts"]]
    assert "no_prediction" in kinds and "run_failed" in kinds
    for alert in doc["alerts"]:
        assert list(alert) == [*BODY_KEYS, "deliveries"]
        assert alert["pipeline"] == "nightly"
    failed = next(a for a in doc["alerts"] if a["kind"] == "run_failed")
    assert failed["level"] == "critical"
    assert {d["status"] for d in failed["deliveries"]} <= {"sent", "pending", "failed"}

    assert all({"text", "kind"} <= set(rec) for rec in doc["recommendations"])
    assert not any("recommendations need" in note for note in doc["notes"])

    # by name only: no file, so no recommendations, and the notes say why
    by_name = _report(capsys, "--pipeline", "nightly", "--db", url)
    assert by_name["recommendations"] == []
    assert any("--pipeline FILE" in note for note in by_name["notes"])
    assert by_name["steps"] == doc["steps"]
    assert by_name["prediction"][0]["target"] == 0.95  # the default without the file

    # a trained model: the report says which one serves, checked as loading checks it
    assert main(["train", "--pipeline", str(path)]) == 0
    capsys.readouterr()
    assert main(["models", "--pipeline", str(path), "--json"]) == 0
    (live,) = [m for m in json.loads(capsys.readouterr().out)["models"] if m["current"]]
    trained = _report(capsys, "--pipeline", str(path))["prediction"][0]
    assert trained["model"]["id"] == live["id"] and trained["model"]["trusted"] is True
    assert trained["model"]["method"] == live["serving"]["method"]
    assert live["id"] in trained["serving"]

    # markdown: the title, the sections, the same numbers
    code = main(["report", "--pipeline", str(path), "--markdown"])
    markdown = capsys.readouterr().out
    assert code == 0
    lines = markdown.splitlines()
    assert lines[0].startswith("# planner report of nightly, ")
    assert lines[0].endswith(" UTC") and " to " in lines[0]
    for heading in ("Current runs", "Steps", "Prediction", "Health", "Alerts"):
        assert f"## {heading}" in lines
    assert "## Recommendations" in lines
    assert "[bold]" not in markdown and "\x1b[" not in markdown
    assert (
        f"| work | 4 | 12 | 91.7% (11/12) | {format_duration(work['p50_s'])} | "
        f"{format_duration(work['p95_s'])} | - |" in lines
    )
    mdape = f"{prediction['mdape'] * 100:.1f}%"
    assert any(line.startswith(f"| nightly | all | {prediction['runs']} | ") for line in lines)
    assert any(f"| {mdape} | " in line and "| 90.0% |" in line for line in lines)
    assert any(line.startswith("| database | ") and " bytes) |" in line for line in lines)
    assert any(line.startswith("| ") and "| run_failed |" in line for line in lines)

    # plain: the same figures in rich tables
    plain = _text(capsys, "--pipeline", str(path))
    assert plain.startswith("report of nightly, ")
    for heading in ("Current runs", "Steps", "Prediction", "Health", "Alerts"):
        assert heading in plain
    assert "91.7% (11/12)" in plain and format_duration(work["p50_s"]) in plain
    assert "no run is running" in plain


def test_a_running_run_is_current_with_its_eta_and_late_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    durations: dict[str, Any] = {"a1": 0.05, "a2": 0.3, "a3": 0.1, "sum": 0.05}
    path = _pipeline(tmp_path, durations, concurrency={"max": 3})
    for _ in range(3):
        _run(path, capsys)
    _durations(tmp_path, {**durations, "a2": 8.0})  # a2 suddenly takes 25x longer
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner", "run", str(path), "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        doc = _wait_for_late(capsys, path)
        (run,) = doc["current"]
        assert run["pipeline"] == "nightly" and run["status"] == "running"
        assert run["tasks"]["total"] == 4 and run["tasks"]["running"] == 1
        assert run["tasks"]["done"] == 2  # a1 and a3; sum waits for a2
        (late,) = run["late"]
        assert (late["step"], late["account"]) == ("work", "a2")
        assert late["elapsed_s"] > late["bound_s"] >= late["predicted_s"] > 0
        with HistoryStore(_url(tmp_path)) as store:
            (plan,) = [p for p in store.plans("nightly") if p.run_id == run["run_id"]]
        assert (run["predicted_s"], run["bound_s"]) == (
            round(plan.predicted_s, 3),
            round(plan.bound_s, 3),
        )
        planned = {(t["step"], t["account"]): t for t in plan.document["tasks"]}
        assert late["bound_s"] == planned[("work", "a2")]["bound_s"]
        # the ETA: a2 is past its prediction (0 s left), then sum's predicted time
        started = datetime.fromisoformat(run["started_at"])
        now = datetime.fromisoformat(doc["period"]["to"])
        eta = datetime.fromisoformat(run["eta"])
        assert (
            started < eta <= now + timedelta(seconds=planned[("sum", None)]["predicted_s"] + 0.01)
        )
        assert run["eta_in_s"] == pytest.approx((eta - now).total_seconds(), abs=0.002)
        assert run["elapsed_s"] == pytest.approx((now - started).total_seconds(), abs=0.002)
        # the monitor of that run has posted its alerts already: they are in the report
        assert {"work"} <= {a["step"] for a in doc["alerts"] if a["kind"] == "task_late"}

        markdown = "\n".join(_markdown(capsys, path))
        assert "## Current runs" in markdown and f"| {run['run_id']} | nightly |" in markdown
        assert "work[a2] running" in markdown
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    after = _report(capsys, "--pipeline", str(path))
    assert after["current"] == []
    work = next(row for row in after["steps"] if row["step"] == "work")
    assert work["runs"] == 4 and work["success_rate"] == 1.0


def _wait_for_late(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        doc = _report(capsys, "--pipeline", str(path), "--since", "1h")
        current = doc["current"]
        alerted = any(a["kind"] == "task_late" for a in doc["alerts"])
        if current and current[0]["late"] and alerted:
            return doc
        time.sleep(0.2)
    raise AssertionError("the running run never showed a late task")


def _markdown(capsys: pytest.CaptureFixture[str], path: Path) -> list[str]:
    assert main(["report", "--pipeline", str(path), "--markdown"]) == 0
    return capsys.readouterr().out.splitlines()


def test_stored_alerts_appear_with_their_deliveries_within_the_period(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline(tmp_path, {"a1": 0.05, "sum": 0.05})
    _run(path, capsys)
    url = _url(tmp_path)
    now = datetime.now(UTC)
    with HistoryStore(url) as store:
        fresh = store.record_alert(
            pipeline="nightly",
            level="critical",
            kind="task_late",
            at=now - timedelta(hours=1),
            text="work[a9] past its bound | 12.0s elapsed",
            run_id="r-1",
            step="work",
            account="a9",
            elapsed_s=12.0,
            predicted_s=1.0,
            bound_s=2.5,
            eta=now,
            sinks=["webhook http://127.0.0.1:9/hook", "log state/alerts.log"],
        )
        store.update_delivery(fresh, "log state/alerts.log", status="sent", attempts=1, sent_at=now)
        store.update_delivery(
            fresh, "webhook http://127.0.0.1:9/hook", status="failed", attempts=2, last_error="x"
        )
        store.record_alert(
            pipeline="nightly",
            level="warning",
            kind="run_late",
            at=now - timedelta(days=2),
            text="old",
        )
        store.record_alert(pipeline="other", level="warning", kind="run_late", at=now, text="other")

    doc = _report(capsys, "--pipeline", str(path), "--since", "1d")
    mine = [a for a in doc["alerts"] if a["run_id"] == "r-1"]
    assert [a["text"] for a in doc["alerts"] if a["kind"] == "run_late"] == []  # old, other
    (alert,) = mine
    assert {k: alert[k] for k in BODY_KEYS if k not in ("at", "eta")} == {
        "level": "critical",
        "kind": "task_late",
        "pipeline": "nightly",
        "run_id": "r-1",
        "step": "work",
        "account": "a9",
        "elapsed_s": 12.0,
        "predicted_s": 1.0,
        "bound_s": 2.5,
        "text": "work[a9] past its bound | 12.0s elapsed",
    }
    assert datetime.fromisoformat(alert["at"]) == now - timedelta(hours=1)
    assert alert["deliveries"] == [
        {"sink": "webhook http://127.0.0.1:9/hook", "status": "failed"},
        {"sink": "log state/alerts.log", "status": "sent"},
    ]
    week = _report(capsys, "--pipeline", str(path))
    assert "old" in [a["text"] for a in week["alerts"]]
    everything = _report(capsys, "--db", url)  # no pipeline: every pipeline in the history
    assert {a["pipeline"] for a in everything["alerts"]} == {"nightly", "other"}
    assert [p["pipeline"] for p in everything["prediction"]] == ["nightly", "other"]
    markdown = "\n".join(_markdown(capsys, path))
    assert "work[a9] past its bound \\| 12.0s elapsed" in markdown  # a pipe is escaped
    assert "webhook http://127.0.0.1:9/hook: failed, log state/alerts.log: sent" in markdown


def test_trend_compares_the_last_third_of_the_period_with_the_first(tmp_path: Path) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    rows = []
    for day, seconds in [(0, 10.0), (1, 11.0), (3, 40.0), (5, 19.0), (6, 21.0), (6, 20.0)]:
        for step, factor in (("load", 1.0), ("send", 0.85 if day >= 5 else 1.0)):
            rows.append(
                {
                    "pipeline": "imported",
                    "step": step,
                    "run_id": f"job-{day}-{seconds}",
                    "started_at": t0 + timedelta(days=day, hours=1),
                    "duration_s": seconds * factor if step == "load" else 10.0 * factor,
                    "status": "succeeded",
                    "source_key": f"{step}-{day}-{seconds}",
                }
            )
    url = f"sqlite:///{tmp_path / 'history.db'}"
    with HistoryStore(url) as store:
        store.import_attempts(rows, source="csv:jobs.csv")
        instance = Instance(store, tmp_path / "models", clock=FakeClock(t0 + timedelta(days=7)))
        doc = build_report(instance, period_s=7 * 86400, cpu_sample_s=0.0)
    steps = {row["step"]: row for row in doc["steps"]}
    # first third (days 0-2.3): 10, 11 -> 10.5; last third (days 4.7-7): 19, 21, 20 -> 20
    assert steps["load"]["trend"] == {
        "ratio": round(20.0 / 10.5, 3),
        "word": "rising",
        "first_median_s": 10.5,
        "last_median_s": 20.0,
    }
    assert steps["send"]["trend"]["word"] == "falling" and steps["send"]["trend"]["ratio"] == 0.85
    assert steps["load"]["p50_s"] == 19.5 and steps["load"]["runs"] == 6
    assert doc["current"] == [] and doc["prediction"][0]["tasks"] == 0  # imported: no plans
    assert [trend_word(r) for r in (1.101, 1.1, 0.9, 0.899, None)] == [
        "rising",
        "steady",
        "steady",
        "falling",
        None,
    ]


def test_no_history_is_not_created(tmp_path: Path) -> None:
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    expected = tmp_path.resolve() / ".planner" / "history.db"
    for extra in ([], ["--json"], ["--markdown"], ["--pipeline", "nightly", "--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "planner", "report", *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
            env=env_free,
        )
        assert proc.returncode == 0, proc.stderr
        assert not (tmp_path / ".planner").exists()
        if "--json" not in extra:
            assert proc.stdout.startswith(f"no history at {expected}: run a pipeline first")
            assert len(proc.stdout.splitlines()) == 1
            continue
        doc = json.loads(proc.stdout)
        assert list(doc)[: len(SECTIONS)] == list(SECTIONS)
        assert all(doc[key] in ([], {}) for key in SECTIONS)
        assert doc["history"] == f"sqlite:///{expected}"
        assert doc["pipeline"] == ("nightly" if "--pipeline" in extra else None)
        assert doc["notes"][0].startswith(f"no history at {expected}")


def test_a_bad_period_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "soon", "-1h"):
        with pytest.raises(SystemExit) as exit_info:
            main(["report", "--since", bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("planner: error: planner report: argument --since")
        assert err.count("\n") == 1


def test_report_on_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_fresh_url: str
) -> None:
    path = _pipeline(tmp_path, {"a1": 0.05, "sum": 0.05})
    assert main(["run", str(path), "--quiet", "--db", pg_fresh_url]) == 0
    capsys.readouterr()
    doc = _report(capsys, "--pipeline", str(path), "--db", pg_fresh_url)
    assert doc["health"]["database"]["size_bytes"] > 1_000_000  # pg_database_size
    assert [row["step"] for row in doc["steps"]] == ["work", "sum"]
    assert not (tmp_path / "state" / "history.db").exists()


def test_the_report_use_case_imports_without_the_command_line() -> None:
    code = (
        "import sys\n"
        "import planner.service.report\n"
        "bad = [m for m in sys.modules if m.startswith('planner.commands') or m == 'planner.cli']\n"
        "heavy = [m for m in ('pandas', 'psutil', 'rich') if m in sys.modules]\n"
        "assert not bad and not heavy, (bad, heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
