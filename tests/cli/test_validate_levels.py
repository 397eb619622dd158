"""``planner validate`` shows the shape of the step graph: levels of independent steps."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from planner.cli import main
from planner.commands.validate import WIDTH, format_levels

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = REPO / "data" / "examples" / "nightly.yaml"

Write = Callable[..., Path]


def validate(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def no_history(tmp_path: Path) -> tuple[str, ...]:
    return ("--db", f"sqlite:///{tmp_path / 'absent.db'}", "--models", str(tmp_path / "m"))


def test_independent_steps_share_a_level(
    write_pipeline: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data: dict[str, Any] = {
        "name": "p",
        "accounts": ["a", "b"],
        "steps": [
            {"id": "1", "command": ["x"], "per_account": True},
            {"id": "2", "command": ["x"], "depends_on": ["1"]},
            {"id": "3", "command": ["x"], "depends_on": ["1"]},
            {"id": "4", "command": ["x"], "depends_on": ["1"]},
            {"id": "21", "command": ["x"], "depends_on": ["2", "3", "4"]},
        ],
    }
    path = write_pipeline(data)
    code, out, err = validate(str(path), *no_history(tmp_path), capsys=capsys)
    assert code == 0, err
    assert "->" not in out  # not one chain any more
    assert (
        "  steps: 5 in 3 levels, the steps of a level can run side by side; * per account\n"
        "    1* | 2, 3, 4 | 21\n"
    ) in out
    code, out, err = validate(str(path), "--json", *no_history(tmp_path), capsys=capsys)
    doc = json.loads(out)
    assert doc["order"] == ["1", "2", "3", "4", "21"]
    assert doc["levels"] == [["1"], ["2", "3", "4"], ["21"]]


def test_selection_levels_ignore_unselected_and_disabled_steps(
    write_pipeline: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data: dict[str, Any] = {
        "name": "p",
        "steps": [
            {"id": "a", "command": ["x"]},
            {"id": "b", "command": ["x"], "depends_on": "a"},
            {"id": "c", "command": ["x"], "enabled": False},
            {"id": "d", "command": ["x"], "depends_on": ["c"]},
        ],
    }
    path = write_pipeline(data)
    code, out, _ = validate(str(path), "--json", *no_history(tmp_path), capsys=capsys)
    assert code == 0
    assert json.loads(out)["levels"] == [["a", "d"], ["b"]]
    code, out, _ = validate(str(path), "--json", "--steps", "b", "--with-deps", capsys=capsys)
    assert json.loads(out)["levels"] == [["a"], ["b"]]


def test_nightly_example_fits_in_a_few_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = validate(str(NIGHTLY), *no_history(tmp_path), capsys=capsys)
    assert code == 0, err
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("  steps: "))
    shape = lines[head : next(i for i, line in enumerate(lines) if "accounts:" in line)]
    assert 2 <= len(shape) <= 4, shape
    assert all(len(line) <= WIDTH for line in shape), shape
    assert shape[0].startswith("  steps: 20 in 12 levels")
    assert shape[1].startswith("    1 | 2*, 3*, 8 | 4* | ")  # 2, 3 and 8 need only step 1
    shown = " ".join(shape[1:]).replace("|", ",").replace("*", "").split(",")
    assert sorted(int(s) for s in shown) == list(range(1, 21))  # every step, once


def test_long_levels_and_long_chains_stay_short() -> None:
    wide = format_levels([["0"], [str(i) for i in range(1, 23)], ["99"]])
    assert wide == [
        "steps: 24 in 3 levels, the steps of a level can run side by side",
        "  0 | 1, 2, 3, 4, 5, ... (22 steps) | 99",
    ]
    chain = format_levels([[str(i)] for i in range(1, 41)], per_account={"7"})
    assert chain[0] == "steps: 40 in 40 levels; * per account"
    assert 2 < len(chain) <= 4 and all(len(line) <= WIDTH for line in chain)
    assert " | 7* | " in " ".join(chain)
    assert chain[2].startswith("  | ")
    assert format_levels([]) == ["steps: none selected"]


def test_levels_from_a_real_process(write_pipeline: Write, tmp_path: Path) -> None:
    data = {
        "name": "p",
        "state_dir": str(tmp_path / "state"),
        "steps": [{"id": "x", "command": ["true"]}, {"id": "y", "command": ["true"]}],
    }
    path = write_pipeline(data)
    done = subprocess.run(
        [sys.executable, "-m", "planner", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "  steps: 2 in 1 level, the steps of a level can run side by side\n    x, y\n" in (
        done.stdout
    )
    assert not (tmp_path / "state").exists()  # validating creates no history
