"""planner.analysis.traces on the real traces of ../shared/data: a slice of the Julia CI
durations imported as ``planner import`` imports it and evaluated as ``planner train``
evaluates it; and (slow) the README's whole evaluation table reproduced."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from planner.analysis.quality import holdout_comparison, permutation_importance
from planner.analysis.traces import (
    JULIA_CI_MAPPING,
    JULIA_CI_TRACE,
    KTH_TRACE,
    TABLE_COLUMNS,
    evaluation_table,
    import_trace,
    shared_data_dir,
)
from planner.cli import main
from planner.errors import PlannerError
from planner.history import HistoryStore
from planner.learning.models import VARIANTS

pytestmark = pytest.mark.realdata

REPO = Path(__file__).resolve().parents[2]
ROWS = 2_000


@pytest.fixture
def julia_slice(shared_data: Path, tmp_path: Path) -> Path:
    """The first ``ROWS`` rows of the Julia CI durations, as a CSV file of their own."""
    raw = pd.read_csv(shared_data / JULIA_CI_TRACE, nrows=ROWS)
    path = tmp_path / "julia-slice.csv"
    raw.to_csv(path, index=False)
    return path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _frame(url: str, pipeline: str) -> pd.DataFrame:
    with HistoryStore(url) as store:
        return store.attempts_frame(pipeline).drop(columns="attempt_id")


def test_import_trace_is_planner_import(
    julia_slice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = f"sqlite:///{tmp_path / 'ours.db'}"
    theirs = f"sqlite:///{tmp_path / 'cli.db'}"
    summary = import_trace(julia_slice, ours, mapping=JULIA_CI_MAPPING)
    report = _cli(
        capsys, "import", "csv", str(julia_slice), "--map", JULIA_CI_MAPPING, "--db", theirs
    )
    assert summary.as_json() == report
    assert (summary.pipeline, summary.read, summary.imported) == ("julia-slice", ROWS, ROWS)
    pd.testing.assert_frame_equal(_frame(ours, "julia-slice"), _frame(theirs, "julia-slice"))
    again = import_trace(julia_slice, ours, "csv", mapping=JULIA_CI_MAPPING)
    assert (again.imported, again.duplicates) == (0, ROWS)


def test_evaluation_table_is_planner_train_rounded_as_the_readme(
    julia_slice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    import_trace(julia_slice, url, pipeline="julia", mapping=JULIA_CI_MAPPING)
    table = evaluation_table(url, "julia", 0.3, title="Julia CI")
    comparison = holdout_comparison(url, "julia", 0.3)
    tests = comparison.evaluation.rows_test
    assert tests == round(ROWS * 0.3)
    assert table.index.name == f"Julia CI ({tests:,} test jobs)"
    assert not comparison.evaluation.baselines_only  # 2,000 attempts: boosted
    assert comparison.variant in VARIANTS
    assert list(table.index) == [
        f"model ({comparison.variant})",
        "last2 (grouped)",
        "last10 (grouped)",
        "last10_x1.2",
    ]
    assert list(table.columns) == [header for _k, header, _s, _d in TABLE_COLUMNS]
    assert str(table["MAE s"].dtype) == "int64"
    # the figures of `planner train --json` on the same history, written as the README does
    doc = _cli(capsys, "train", "--pipeline", "julia", "--db", url, "--models", str(tmp_path / "m"))
    for label, method in zip(table.index, ("model", "last2", "last10", "last10_x1.2"), strict=True):
        for key, header, scale, digits in TABLE_COLUMNS:
            written = f"{doc['methods'][method][key] * scale:.{digits}f}"
            assert table.loc[label, header] == float(written), (label, header)


def test_permutation_importance_of_a_boosted_model(julia_slice: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    import_trace(julia_slice, url, pipeline="julia", mapping=JULIA_CI_MAPPING)
    importance = permutation_importance(url, "julia", 0.3, n_repeats=2)
    assert importance["feature"].is_unique
    assert importance["in_trees"].any()  # the trees read some features
    assert importance["importance"].iloc[0] > 0


def test_the_kind_comes_from_the_name(shared_data: Path, tmp_path: Path) -> None:
    with gzip.open(shared_data / KTH_TRACE, "rt") as f:
        lines = f.readlines()
    header = [line for line in lines if line.startswith(";")]
    jobs = [line for line in lines if not line.startswith(";")][:500]
    sample = tmp_path / "kth.swf"
    sample.write_text("".join(header + jobs), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'h.db'}"
    summary = import_trace(sample, url)
    assert (summary.pipeline, summary.read) == ("kth", 500)
    assert (_frame(url, "kth")["source"] == "swf:kth.swf").all()
    other = tmp_path / "jobs.log"
    other.write_text("x\n", encoding="utf-8")
    with pytest.raises(PlannerError, match="kind"):
        import_trace(other, url)
    with pytest.raises(PlannerError, match="mapping"):  # before the database is touched
        import_trace(tmp_path / "table.csv", f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()
    assert shared_data_dir() == shared_data


def _readme_table(title: str) -> pd.DataFrame:
    """The README's evaluation table whose first header cell starts with ``title``."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {title} ("))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append([cells[0], *(float(c.replace(",", "")) for c in cells[1:])])
    frame = pd.DataFrame(rows, columns=header).set_index(header[0])
    return frame


@pytest.mark.slow
def test_the_readme_table_is_reproduced(shared_data: Path, tmp_path: Path) -> None:
    """Both whole traces (about 30 s): every cell of the README's table."""
    url = f"sqlite:///{tmp_path / 'traces.db'}"
    kth = import_trace(shared_data / KTH_TRACE, url)
    julia = import_trace(shared_data / JULIA_CI_TRACE, url, mapping=JULIA_CI_MAPPING)
    for title, pipeline in (("KTH-SP2", kth.pipeline), ("Julia CI", julia.pipeline)):
        ours = evaluation_table(url, pipeline, 0.3, title=title)
        readme = _readme_table(title)
        assert readme.index.name == ours.index.name
        assert list(readme.index) == list(ours.index)
        assert list(readme.columns) == list(ours.columns)
        differ = [
            f"{title} {row} {column}: README {readme.loc[row, column]}, "
            f"measured {ours.loc[row, column]}"
            for row in ours.index
            for column in ours.columns
            if float(readme.loc[row, column]) != float(ours.loc[row, column])
        ]
        assert not differ, "; ".join(differ)
