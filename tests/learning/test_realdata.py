"""On real traces (subsamples, imported with the real importers), the model beats last-10."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from planner.cli import main

pytestmark = pytest.mark.realdata


def _train(db: str, models: Path, pipeline: str, capsys: pytest.CaptureFixture[str]) -> dict:
    code = main(
        [
            "train",
            "--pipeline",
            pipeline,
            "--db",
            db,
            "--models",
            str(models),
            "--holdout",
            "0.3",
            "--json",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    doc: dict = json.loads(out.out)
    return doc


def test_kth_subsample(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = shared_data / "KTH-SP2-1996-2.1-cln.swf.gz"
    with gzip.open(source, "rt") as f:
        lines = f.readlines()
    header = [line for line in lines if line.startswith(";")]
    jobs = [line for line in lines if not line.startswith(";")][:5000]
    sample = tmp_path / "kth.swf"
    sample.write_text("".join(header + jobs), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'h.db'}"
    assert main(["import", "swf", str(sample), "--pipeline", "kth", "--db", db]) == 0
    capsys.readouterr()
    doc = _train(db, tmp_path / "models", "kth", capsys)
    model, last10 = doc["methods"]["model"], doc["methods"]["last10"]
    assert model["mdape"] < last10["mdape"]
    assert model["mae_s"] < last10["mae_s"]
    assert model["overrun"] < 0.1  # calibrated, unlike the flat rule
    assert doc["methods"]["last10_x1.2"]["overrun"] > 0.2


def test_julia_subsample(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = shared_data / "julia-ci-durations.csv.gz"
    with gzip.open(source, "rt") as f:
        lines = f.readlines()[:3001]
    sample = tmp_path / "julia.csv"
    sample.write_text("".join(lines), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'h.db'}"
    mapping = "step=job,run_id=build,started_at=created_at,duration_s=duration_s"
    code = main(["import", "csv", str(sample), "--map", mapping, "--pipeline", "julia", "--db", db])
    assert code == 0
    capsys.readouterr()
    doc = _train(db, tmp_path / "models", "julia", capsys)
    model, last10 = doc["methods"]["model"], doc["methods"]["last10"]
    # on CI durations the grouped means are hard to beat: the model may keep one of them
    # (on the whole trace it beats last-10 by 7 % in MAE; see the README table)
    assert model["mae_s"] <= last10["mae_s"]
    assert model["mdape"] <= last10["mdape"] * 1.05
    assert abs(model["overrun"] - 0.05) < 0.03
