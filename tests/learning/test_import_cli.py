"""``planner import swf|csv`` end to end: real files into a real store, idempotency, exit codes."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from planner.cli import main
from planner.history import HistoryStore

JULIA_MAP = "step=job,run_id=build,started_at=created_at,duration_s=duration_s"
EAGLE_MAP = (
    "step=name,account=user,quantity=processors_req,run_id=job_id,started_at=start_time,"
    "finished_at=end_time,duration_s=run_time,status=state,param.partition=partition,"
    "param.qos=qos,param.wallclock_req=wallclock_req"
)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'history.db'}"


def _frame(url: str, pipeline: str | None = None) -> pd.DataFrame:
    with HistoryStore(url) as store:
        return store.attempts_frame(pipeline)


@pytest.mark.realdata
def test_kth_log_imports_once(
    shared_data: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(shared_data / "KTH-SP2-1996-2.1-cln.swf.gz")
    code, first = _run(capsys, "import", "swf", path, "--db", db, "--json")
    assert code == 0
    assert first["pipeline"] == "KTH-SP2-1996-2.1-cln"
    assert (first["read"], first["imported"], first["duplicates"]) == (28_476, 28_476, 0)
    assert first["malformed"] == 0 and first["malformed_lines"] == []
    # the log header's EndTime, Fri Aug 29 10:55:01 CEST 1997, is the last finish
    assert first["span"][1] == "1997-08-29T08:55:01+00:00"
    assert first["accounts"] == 214
    code, second = _run(capsys, "import", "swf", path, "--db", db, "--json")
    assert code == 0 and (second["imported"], second["duplicates"]) == (0, 28_476)

    frame = _frame(db, "KTH-SP2-1996-2.1-cln")
    assert len(frame) == 28_476
    assert (frame["source"] == "swf:KTH-SP2-1996-2.1-cln.swf.gz").all()
    assert frame["run_id"].is_unique and (frame["attempt"] == 1).all()
    assert frame["started_at"].is_monotonic_increasing
    assert str(frame["started_at"].dtype) == "datetime64[us, UTC]"
    assert frame["params"].iloc[0]["requested_time"] > 0


@pytest.mark.realdata
def test_julia_and_slurm_csv_import(
    shared_data: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    julia = str(shared_data / "julia-ci-durations.csv.gz")
    code, report = _run(capsys, "import", "csv", julia, "--map", JULIA_MAP, "--db", db, "--json")
    assert code == 0 and report["pipeline"] == "julia-ci-durations"
    assert (report["read"], report["imported"], report["malformed"]) == (8_640, 8_640, 0)
    assert report["steps"] == 102
    code, again = _run(capsys, "import", "csv", julia, "--map", JULIA_MAP, "--db", db, "--json")
    assert (again["imported"], again["duplicates"]) == (0, 8_640)

    eagle = str(shared_data / "nrel-eagle-sample.csv")
    argv = ["import", "csv", eagle, "--map", EAGLE_MAP, "--pipeline", "eagle", "--db", db]
    code, report = _run(capsys, *argv, "--json")
    assert code == 0 and report["imported"] == 1_000
    frame = _frame(db, "eagle")
    assert frame["status"].value_counts().to_dict() == {"succeeded": 985, "timed_out": 15}
    assert frame["account"].nunique() == report["accounts"]
    julia_frame = _frame(db, "julia-ci-durations")
    assert len(julia_frame) == 8_640 and julia_frame["account"].isna().all()
    raw = pd.read_csv(julia)
    assert julia_frame["run_id"].nunique() == raw["build"].nunique()  # one run per build
    assert (julia_frame["run_id"] == "994").sum() == (raw["build"] == 994).sum()


def test_malformed_lines_are_reported_and_the_rest_imported(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["job,at,d"] + [f"j{i % 3},2026-01-01 00:{i:02d}:00,{10 + i}" for i in range(20)]
    rows[3] = "j0,not a time,5"
    rows[7] = "j1,2026-01-01 00:00:00"
    rows[15] = "j1,2026-01-01 00:00:00,abc"
    path = tmp_path / "cron.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    argv = ["import", "csv", str(path), "--map", "step=job,started_at=at,duration_s=d"]
    code, report = _run(capsys, *argv, "--db", db, "--json")
    assert code == 0
    assert report["pipeline"] == "cron"
    assert (report["read"], report["imported"], report["malformed"]) == (20, 17, 3)
    assert report["malformed_lines"] == [4, 8, 16]
    assert report["span"] == ["2026-01-01T00:00:00+00:00", "2026-01-01T00:19:29+00:00"]

    code = main([*argv, "--db", db])  # the human summary says the same
    out = capsys.readouterr().out
    assert code == 0 and "4, 8, 16" in out and "17" in out
    cells = {
        parts[1]: parts[2]
        for line in out.splitlines()
        if len(parts := [cell.strip() for cell in line.split("\u2502")]) == 4
    }
    # the same file a second time: its 17 rows are already there, nothing is added
    assert cells["records read"] == "20" and cells["imported"] == "0"
    assert cells["already there"] == "17" and cells["malformed, skipped"] == "3 (lines 4, 8, 16)"


def test_swf_gz_with_header_zone_into_store(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "; StartTime: Thu Jan 16 14:00:00 CET 1997\n; TimeZoneString: Europe/Stockholm\n"
        "1 0 30 100 2 -1 -1 2 600 -1 1 5 -1 4 -1 -1 -1 -1\n"
        "2 10 0 100 2 -1 -1 2 600 -1 1 5\n"
    )
    path = tmp_path / "tiny.swf.gz"
    path.write_bytes(gzip.compress(text.encode()))
    code, report = _run(capsys, "import", "swf", str(path), "--db", db, "--json")
    assert code == 0 and report["imported"] == 1 and report["malformed_lines"] == [4]
    frame = _frame(db, "tiny")
    row = frame.iloc[0]
    assert row["started_at"] == pd.Timestamp("1997-01-16 13:00:30", tz="UTC")
    assert (row["step"], row["account"], row["run_id"]) == ("4", "5", "swf-1")


@pytest.mark.postgres
def test_import_into_postgresql_is_idempotent(
    tmp_path: Path, pg_fresh_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("job,at,d,st\na,2026-01-01T00:00:00Z,5,COMPLETED\na,2026-01-01T01:00:00Z,7,\n")
    argv = ["import", "csv", str(path), "--map", "step=job,started_at=at,duration_s=d,status=st"]
    code, report = _run(capsys, *argv, "--db", pg_fresh_url, "--json")
    assert code == 0 and report["imported"] == 2
    code, report = _run(capsys, *argv, "--db", pg_fresh_url, "--json")
    assert code == 0 and (report["imported"], report["duplicates"]) == (0, 2)
    frame = _frame(pg_fresh_url, "runs")
    assert frame["status"].tolist() == ["succeeded", "unknown"]


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planner", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def test_bad_input_exits_2_with_one_line_and_stores_nothing(tmp_path: Path, db: str) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("job,at,d\na,2026-01-01 00:00,5\n")
    done = _cli("import", "csv", str(path), "--map", "step=job,when=at", "--db", db, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("planner: error: --map: unknown field(s) 'when'")
    assert len(done.stderr.splitlines()) == 1

    done = _cli("import", "csv", str(path), "--map", "step=name,started_at=at", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"planner: error: {path}: no column(s) 'name' (columns: job, at, d)\n"

    done = _cli("import", "swf", str(tmp_path / "absent.swf"), "--db", db, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"planner: error: {tmp_path / 'absent.swf'}: no such file\n"

    garbage = tmp_path / "garbage.swf"
    garbage.write_text("hello world\n")
    done = _cli("import", "swf", str(garbage), "--db", db, "--json", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert "no valid record to import (1 malformed, lines 1)" in done.stderr

    done = _cli("import", "csv", str(path), cwd=tmp_path)  # --map is required
    assert done.returncode == 2 and "--map" in done.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / ".planner").exists()


def test_json_output_is_the_only_stdout_and_db_defaults_apply(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("job,at,d\na,2026-01-01 00:00,5\n")
    done = _cli("import", "csv", str(path), "--map", "step=job,started_at=at,duration_s=d",
                "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["imported"] == 1
    assert (tmp_path / ".planner" / "history.db").is_file()  # the default state dir


def test_importer_modules_import_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "import planner.learning.importers, planner.learning.registry\n"
        "import planner.commands.importing, planner.commands.models\n"
        "heavy = ('pandas', 'numpy', 'sklearn', 'joblib', 'sqlalchemy', 'rich')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_a_later_sacct_export_adds_only_the_jobs_finished_since(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = "run_id=JobID,step=JobName,account=User,started_at=Start,finished_at=End,status=State"
    header = "JobID,JobName,User,Start,End,State\n"
    done = "11,sim,ann,2026-02-01T10:00:00,2026-02-01T11:00:00,COMPLETED\n"
    path = tmp_path / "sacct.csv"
    path.write_text(header + done + "12,sim,ann,2026-02-01T10:05:00,Unknown,RUNNING\n")
    argv = ["import", "csv", str(path), "--map", mapping, "--db", db]
    code, report = _run(capsys, *argv, "--json")
    assert code == 0 and (report["imported"], report["unfinished"]) == (1, 1)
    path.write_text(header + done + "12,sim,ann,2026-02-01T10:05:00,2026-02-01T12:05:00,TIMEOUT\n")
    code, report = _run(capsys, *argv, "--json")
    assert (report["imported"], report["duplicates"], report["unfinished"]) == (1, 1, 0)
    frame = _frame(db, "sacct")
    assert frame["status"].tolist() == ["succeeded", "timed_out"]
    assert frame["duration_s"].tolist() == [3600.0, 7200.0]


def _sacct_lines(count: int) -> list[str]:
    """``sacct --parsable2`` output: ``count`` jobs of up to 1-02:03:04, each with its
    ``.batch`` step (``import csv`` keeps steps as rows of their own)."""
    lines = ["JobID|JobName|User|Start|End|Elapsed|State|ExitCode"]
    for i in range(count):
        start = pd.Timestamp("2026-02-01T00:00:00") + pd.Timedelta(minutes=7 * i)
        elapsed = pd.Timedelta(seconds=93_784 * (i + 1) // count)
        end = (start + elapsed).isoformat()
        days, rest = divmod(int(elapsed.total_seconds()), 86_400)
        clock = f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
        text = f"{days}-{clock}" if days else clock
        state = ("COMPLETED", "FAILED", "CANCELLED by 1001", "TIMEOUT")[i % 4]
        exit_code = ("0:0", "1:0", "0:15", "0:0")[i % 4]
        lines.append(
            f"{5000 + i}|job{i % 3}|u{i % 5}|{start.isoformat()}|{end}|{text}|{state}|{exit_code}"
        )
        lines.append(
            f"{5000 + i}.batch|batch||{start.isoformat()}|{end}|{text}|{state}|{exit_code}"
        )
    return lines


SACCT_CSV_MAP = (
    "run_id=JobID,step=JobName,account=User,started_at=Start,finished_at=End,"
    "duration_s=Elapsed,status=State,exit_code=ExitCode"
)


def test_sacct_output_through_import_csv_with_elapsed_as_duration(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sacct.txt"
    path.write_text("\n".join(_sacct_lines(150)) + "\n")  # 300 data lines
    argv = ["import", "csv", str(path), "--map", SACCT_CSV_MAP, "--db", db, "--json"]
    code, report = _run(capsys, *argv)
    assert code == 0
    assert (report["read"], report["imported"], report["malformed"]) == (300, 300, 0)
    frame = _frame(db, "sacct")
    jobs = frame[~frame["run_id"].str.contains(".", regex=False)]
    assert jobs["duration_s"].max() == 93_784.0  # 1-02:03:04
    assert (
        jobs["duration_s"] == (jobs["finished_at"] - jobs["started_at"]).dt.total_seconds()
    ).all()
    assert jobs["status"].value_counts().to_dict() == {
        "succeeded": 38, "failed": 38, "cancelled": 37, "timed_out": 37,
    }  # fmt: skip
    assert sorted(jobs["exit_code"].unique().tolist()) == [0, 1, 143]


def test_all_malformed_csv_exits_2_naming_column_and_value(tmp_path: Path, db: str) -> None:
    lines = _sacct_lines(150)
    bad = [lines[0]] + [line.replace("|2026-02-01T", "|2026-13-01T", 1) for line in lines[1:]]
    path = tmp_path / "sacct.txt"
    path.write_text("\n".join(bad) + "\n")
    done = _cli("import", "csv", str(path), "--map", SACCT_CSV_MAP, "--db", db, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"planner: error: {path}: no valid record to import (300 malformed, lines 2, 3, 4, 5, "
        "6, ...): line 2: Start '2026-13-01T00:00:00' is not a time; line 3: Start "
        "'2026-13-01T00:00:00' is not a time; line 4: Start '2026-13-01T00:07:00' is not a time\n"
    )
    assert not Path(db.removeprefix("sqlite:///")).exists()
