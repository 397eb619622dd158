"""``planner run``, ``runs``, ``show``, ``demo`` as real processes: exit codes, JSON shapes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from .conftest import planner_cli

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
RUN_KEYS = {"run_id", "pipeline", "status", "started_at", "finished_at", "duration_s", "tasks",
            "predicted_s", "bound_s", "concurrency", "partial", "selection",
            "resumed_from"}  # fmt: skip
ATTEMPT_KEYS = {"step", "account", "attempt", "status", "started_at", "finished_at",
                "duration_s", "exit_code", "error_class", "peak_rss_mb", "cpu_s",
                "stderr_tail"}  # fmt: skip


def cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = planner_cli(*args, cwd=cwd)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_run_runs_show_json_and_exit_codes(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump({
        "name": "cli", "state_dir": "state", "accounts": ["a", "b"],
        "steps": [{"id": "ok", "command": ["true"], "per_account": True},
                  {"id": "bad", "command": ["sh", "-c", "echo boom >&2; exit 9"],
                   "depends_on": ["ok"]}],
    }))  # fmt: skip
    code, out, err = cli("run", str(pipeline), "--json", cwd=tmp_path)
    assert code == 1, err
    doc = json.loads(out)
    assert set(doc) == {"run", "attempts"}
    assert set(doc["run"]) == RUN_KEYS | {"pauses", "limit_changes"}
    assert doc["run"]["status"] == "failed" and doc["run"]["tasks"] == {"failed": 1, "succeeded": 2}
    for attempt in doc["attempts"]:
        assert set(attempt) == ATTEMPT_KEYS
        assert ISO.match(attempt["started_at"]) and ISO.match(attempt["finished_at"])
    seen = {(a["step"], a["account"], a["exit_code"], a["error_class"], a["stderr_tail"])
            for a in doc["attempts"]}  # fmt: skip
    assert seen == {("ok", "a", 0, None, None), ("ok", "b", 0, None, None),
                    ("bad", None, 9, "default", "boom\n")}  # fmt: skip
    # the run's own plan: three tasks at the 60 s default (no history yet), one at a time
    assert doc["run"]["predicted_s"] == 180.0 and doc["run"]["concurrency"] == 1
    (start,) = doc["run"]["limit_changes"]  # a fixed limit: only where it started
    assert (start["from"], start["to"], start["reason"]) == (None, 1, "start")
    assert ISO.match(start["at"])
    run_id = doc["run"]["run_id"]

    code, out, _ = cli("run", str(pipeline), "--steps", "ok", "--accounts", "b", "--json",
                       cwd=tmp_path)  # fmt: skip
    assert code == 0 and json.loads(out)["run"]["tasks"] == {"succeeded": 1}

    code, out, _ = cli("runs", "--pipeline", str(pipeline), "--json", cwd=tmp_path)
    runs = json.loads(out)["runs"]
    assert code == 0 and [set(r) for r in runs] == [RUN_KEYS, RUN_KEYS]
    assert runs[1]["run_id"] == run_id  # newest first
    assert [r["partial"] for r in runs] == [True, False]  # --steps ok --accounts b
    assert runs[0]["selection"] == {
        "steps": ["ok"], "accounts": ["b"], "requested": {"steps": ["ok"], "accounts": ["b"]}
    }  # fmt: skip
    assert runs[0]["resumed_from"] is None
    assert ISO.match(runs[1]["started_at"]) and runs[1]["duration_s"] > 0

    db = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    code, out, _ = cli("show", run_id, "--db", db, "--json", cwd=tmp_path)
    assert code == 0 and json.loads(out) == doc

    code, out, _ = cli("show", run_id, "--db", db, cwd=tmp_path)
    assert code == 0 and run_id in out and "boom" in out  # the failed attempt's stderr tail

    code, _, err = cli("show", "nope", "--db", db, cwd=tmp_path)
    assert code == 2 and err.startswith("planner: error: nope: no such run")
    code, _, err = cli("run", str(pipeline), "--steps", "bad", cwd=tmp_path)
    assert code == 2 and "depends on 'ok'" in err
    code, _, err = cli("run", str(pipeline), "--accounts", "zz", cwd=tmp_path)
    assert code == 2 and "unknown accounts" in err
    code, out, err = cli("run", str(tmp_path / "missing.yaml"), "--json", cwd=tmp_path)
    assert code == 2 and out == "" and "file not found" in err
    for bad, why in (("x", "not a whole number: 'x'"), ("0", "must be at least 1, got 0")):
        code, _, err = cli("run", str(pipeline), "--concurrency", bad, cwd=tmp_path)
        assert code == 2 and err.strip().endswith(f"argument --concurrency: {why}"), err


def test_run_prints_plain_progress_when_not_a_terminal(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump({
        "name": "plain", "state_dir": "state",
        "steps": [{"id": "one", "command": ["true"]},
                  {"id": "two", "command": ["true"], "depends_on": ["one"]}],
    }))  # fmt: skip
    code, out, _ = cli("run", str(pipeline), cwd=tmp_path)
    assert code == 0
    lines = out.splitlines()
    assert any(line.endswith("one: succeeded") for line in lines)
    assert re.search(r"^run \S+: predicted 2m 0s \(bound \S+ \S+\) for 2 task\(s\) at "
                     r"concurrency 1, longest first$", lines[0])  # fmt: skip
    assert re.search(r"^run \S+: succeeded in \S+ \(predicted 2m 0s, bound .*\): 2 succeeded$",
                     out, re.M)  # fmt: skip
    assert " of plain: " not in out  # the attempt table is for --quiet and --json only

    code, out, _ = cli("run", str(pipeline), "--quiet", cwd=tmp_path)
    assert code == 0 and not re.search(r"^\[\s*\d", out, re.M)  # no progress lines
    assert re.search(r"^run \S+: succeeded in .*: 2 succeeded$", out.splitlines()[0])  # summary
    assert "longest first" not in out  # ... without the plan line
    assert "┃ step" not in out  # ... and no table: --quiet lists failed attempts only


def test_demo_builds_a_history(tmp_path: Path) -> None:
    code, out, err = cli("demo", "--state-dir", str(tmp_path / "demo"), "--runs", "1", "--json",
                         cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    (run,) = doc["runs"]
    assert run["status"] == "succeeded" and run["tasks"] == {"succeeded": 18}
    assert doc["history"].endswith("history.db") and Path(doc["pipeline"]).is_file()
    code, out, _ = cli("runs", "--pipeline", doc["pipeline"], "--json", cwd=tmp_path)
    assert [r["run_id"] for r in json.loads(out)["runs"]] == [run["run_id"]]
