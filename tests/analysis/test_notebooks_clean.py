"""The notebooks are committed without outputs, and use only the analysis API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_four_notebooks() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, "a notebook with no code"
    for cell in code:
        assert cell.get("outputs") == [], f"{path.name}: outputs committed (clear them)"
        assert cell.get("execution_count") is None, f"{path.name}: execution count committed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_call_the_api_and_copy_no_code(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "from planner import analysis" in source or "from planner.analysis import" in source
    for word in ("def ", "class ", "import sqlalchemy", "planner.commands", "planner.display"):
        assert word not in source, f"{path.name}: {word.strip()!r} belongs in planner.analysis"
    first = next(c for c in cells if c["cell_type"] == "code")
    assert "DB_URL" in "".join(first["source"]) or "TRACE" in "".join(first["source"]).upper()


def test_the_analysis_api_imports_no_other_front_end_and_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import planner.analysis\n"
        "bad = [m for m in sys.modules if m.startswith(('planner.commands', 'planner.display',"
        " 'planner.daemon', 'matplotlib', 'sklearn')) or m == 'planner.cli']\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
