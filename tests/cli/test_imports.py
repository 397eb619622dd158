"""Starting the command line must stay cheap: no heavy library on its import path."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "pandas",
    "sklearn",
    "scipy",
    "numpy",
    "sqlalchemy",
    "joblib",
    "rich",
    "apscheduler",
    "dask",
    "distributed",
)


def test_cli_parser_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from planner.cli import build_parser\n"
        "build_parser()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"imported at start-up: {done.stdout.strip()}"


def test_help_and_version_answer() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "planner", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("planner ")
    done = subprocess.run(
        [sys.executable, "-m", "planner", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "validate" in done.stdout
    listed = [
        line.split()[0]
        for line in done.stdout.split("COMMAND\n", 1)[1].split("\n\n", 1)[0].splitlines()
        if not line.startswith(" " * 5)  # a help text's wrapped line
    ]
    assert listed == [
        *("validate", "run", "daemon", "runs", "show", "status", "report", "dashboard"),
        *("demo", "import"),
        *("train", "models", "plan", "simulate"),
    ]


def test_bad_arguments_exit_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "planner", "validate"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert done.stderr.startswith("planner: error: ")
    assert "Traceback" not in done.stderr
