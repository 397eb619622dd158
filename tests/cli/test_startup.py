"""``planner --help`` starts fast: nothing heavy is imported on the way to the parser.

Checked in real subprocesses by what ``sys.modules`` holds when the process exits (``-X
importtime`` would miss modules loaded through ``importlib.import_module``, which is how
the CLI loads its command modules).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from planner.cli import COMMANDS

#: Libraries that cost tens to thousands of milliseconds to import.
HEAVY = (
    "pydantic",
    "pydantic_core",
    "yaml",
    "sqlalchemy",
    "pandas",
    "numpy",
    "scipy",
    "sklearn",
    "joblib",
    "rich",
    "psutil",
    "apscheduler",
)

COMMAND_MODULES = COMMANDS


def modules_at_exit(tmp_path: Path, code: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Run ``code`` in a fresh interpreter; the modules loaded when it exits."""
    out = tmp_path / "modules.json"
    prelude = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(out)!r}, 'w').write(json.dumps(list(sys.modules))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, check=False
    )
    assert out.exists(), done.stderr[-2000:]
    return set(json.loads(out.read_text())), done


def heavy_in(modules: set[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    # what ``python -m planner --help`` does, with the modules read at exit
    code = (
        "import runpy\n"
        "sys.argv = ['planner', '--help']\n"
        "runpy.run_module('planner', run_name='__main__', alter_sys=True)\n"
    )
    modules, done = modules_at_exit(tmp_path, code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "validate" in done.stdout
    assert {f"planner.commands.{m}" for m in COMMAND_MODULES} <= modules  # it built them all
    assert heavy_in(modules) == []
    assert "planner.config" not in modules


def test_help_as_a_real_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "planner", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stderr == ""
    assert "validate" in done.stdout


def test_importing_the_package_is_cheap(tmp_path: Path) -> None:
    modules, done = modules_at_exit(tmp_path, "import planner, planner.cli, planner.defaults\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert heavy_in(modules) == []
    assert "planner.config" not in modules


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_each_command_module_imports_nothing_heavy(tmp_path: Path, module: str) -> None:
    modules, done = modules_at_exit(tmp_path, f"import planner.commands.{module}\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert heavy_in(modules) == [], f"planner.commands.{module} imports them at module level"


def test_lazy_attributes_still_work(tmp_path: Path) -> None:
    code = (
        "import planner\n"
        "assert 'pydantic' not in sys.modules\n"
        "from planner import Pipeline, Step, load_pipeline, select_steps\n"
        "import planner.config as c\n"
        "assert load_pipeline is c.load_pipeline and Pipeline is c.Pipeline\n"
        "assert Step is c.Step and select_steps is c.select_steps\n"
        "assert 'load_pipeline' in dir(planner)\n"
        "try:\n"
        "    planner.no_such_thing\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    modules, done = modules_at_exit(tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert "pydantic" in modules  # loaded on first use of Pipeline
    assert done.stdout.strip() == "module 'planner' has no attribute 'no_such_thing'"
