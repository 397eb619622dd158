"""The service layer stands alone, and its views of the history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from planner.cli import main


def test_service_layer_imports_without_the_command_line() -> None:
    code = (
        "import sys\n"
        "import planner.service, planner.service.planning, planner.service.running\n"
        "import planner.service.views, planner.service.training\n"
        "bad = [m for m in sys.modules if m.startswith('planner.commands') or m == 'planner.cli']\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_runs_without_history_creates_nothing(tmp_path: Path) -> None:
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for extra in ([], ["--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "planner", "runs", *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
            env=env_free,
        )
        assert proc.returncode == 0, proc.stderr
        assert not (tmp_path / ".planner").exists()
        if extra:
            assert json.loads(proc.stdout) == {"runs": []}
        else:
            expected = tmp_path.resolve() / ".planner" / "history.db"
            assert proc.stdout.startswith(f"no history at {expected}: run a pipeline first")


def test_show_prints_the_stderr_tail_of_failed_attempts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {
        "name": "tails",
        "state_dir": str(tmp_path / "state"),
        "steps": [
            {
                "id": "boom",
                "command": [
                    sys.executable,
                    "-c",
                    "import sys; print('ConnectionError: upstream refused', file=sys.stderr); "
                    "sys.exit(3)",
                ],
            },
            {"id": "fine", "command": [sys.executable, "-c", "pass"]},
        ],
    }
    path = tmp_path / "tails.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["run", str(path), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    by_step = {a["step"]: a for a in doc["attempts"]}
    assert "ConnectionError: upstream refused" in by_step["boom"]["stderr_tail"]
    assert by_step["fine"]["stderr_tail"] is None
    assert main(["show", doc["run"]["run_id"], "--pipeline", str(path)]) == 0
    out = capsys.readouterr().out
    assert "boom attempt 1 stderr (end):" in out
    assert "  ConnectionError: upstream refused" in out
    # --quiet: the summary and the failures only
    assert main(["run", str(path), "--quiet"]) == 1
    quiet = capsys.readouterr().out
    assert "ConnectionError: upstream refused" in quiet
    assert "fine" not in quiet
