"""``planner import sacct``: Slurm's own columns, one record per job, real files and stores."""

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
from planner.errors import InputFileError
from planner.history import HistoryStore
from planner.learning.importers import map_status, parse_sacct
from planner.learning.importers.sacct import size_mib
from planner.learning.importers.values import slurm_duration

HEADER = (
    "JobID|JobName|User|Account|Partition|NCPUS|ReqCPUS|ReqMem|Timelimit|Submit|Start|End|"
    "Elapsed|State|ExitCode|MaxRSS|TotalCPU"
)
# What `sacct --allusers --parsable2 --duplicates --format=<HEADER's columns>` prints:
# job lines, then their steps (.batch, .extern, .0), an array (7010_1, 7010_2 and the
# pending 7010_[3-5]) and a requeued job (7015: its first run REQUEUED, then COMPLETED).
JOBS = """\
7001|assemble|ann|genomics|long|16|16|64G|2-00:00:00|2026-02-01T07:55:00|2026-02-01T08:00:05|2026-02-02T10:03:09|1-02:03:04|COMPLETED|0:0||1-10:11:12
7001.batch|batch||genomics||16|16|64G||2026-02-01T08:00:05|2026-02-01T08:00:05|2026-02-02T10:03:09|1-02:03:04|COMPLETED|0:0|52428800K|1-10:11:10
7001.extern|extern||genomics||16|16|64G||2026-02-01T08:00:05|2026-02-01T08:00:05|2026-02-02T10:03:09|1-02:03:04|COMPLETED|0:0|1024K|00:00.002
7002|align|bob|genomics|short|4|4|2000Mc|01:00:00|2026-02-01T09:00:00|2026-02-01T09:00:01|2026-02-01T09:12:31|00:12:30|FAILED|1:0||00:45:12
7002.batch|batch||genomics||4|4|2000Mc||2026-02-01T09:00:01|2026-02-01T09:00:01|2026-02-01T09:12:31|00:12:30|FAILED|1:0|3145728K|00:45:12
7002.extern|extern||genomics||4|4|2000Mc||2026-02-01T09:00:01|2026-02-01T09:00:01|2026-02-01T09:12:31|00:12:30|COMPLETED|0:0|900K|00:00.001
7003|align|bob|genomics|short|4|4|2000Mc|01:00:00|2026-02-01T09:01:00|2026-02-01T09:01:02|2026-02-01T09:06:02|00:05:00|CANCELLED by 1001|0:15||19:58.250
7003.batch|batch||genomics||4|4|2000Mc||2026-02-01T09:01:02|2026-02-01T09:01:02|2026-02-01T09:06:03|00:05:01|CANCELLED|0:15|2097152K|19:58.250
7003.extern|extern||genomics||4|4|2000Mc||2026-02-01T09:01:02|2026-02-01T09:01:02|2026-02-01T09:06:02|00:05:00|COMPLETED|0:0|880K|00:00.001
7004|simulate|carol|physics|compute|32|32|128G|04:00:00|2026-02-01T10:00:00|2026-02-01T10:00:10|2026-02-01T14:00:27|04:00:17|TIMEOUT|0:0||5-08:00:00
7004.batch|batch||physics||32|32|128G||2026-02-01T10:00:10|2026-02-01T10:00:10|2026-02-01T14:00:28|04:00:18|CANCELLED|0:15|98765432K|5-08:00:00
7004.extern|extern||physics||32|32|128G||2026-02-01T10:00:10|2026-02-01T10:00:10|2026-02-01T14:00:27|04:00:17|COMPLETED|0:0|1100K|00:00.003
7005|simulate|carol|physics|compute|32|32|128G|04:00:00|2026-02-01T10:05:00|2026-02-01T14:01:00|Unknown|01:15:00|RUNNING|0:0||00:00:00
7005.batch|batch||physics||32|32|128G||2026-02-01T14:01:00|2026-02-01T14:01:00|Unknown|01:15:00|RUNNING|0:0||00:00:00
7005.extern|extern||physics||32|32|128G||2026-02-01T14:01:00|2026-02-01T14:01:00|Unknown|01:15:00|RUNNING|0:0||00:00:00
7006|simulate|dave|physics|compute|0|64|256G|1-00:00:00|2026-02-01T10:06:00|Unknown|Unknown|00:00:00|PENDING|0:0||00:00:00
7007|train|erin|ml|gpu|8|8|32G|12:00:00|2026-02-01T11:00:00|2026-02-01T11:00:04|2026-02-01T11:42:04|00:42:00|OUT_OF_MEMORY|0:125||02:10:00
7007.batch|batch||ml||8|8|32G||2026-02-01T11:00:04|2026-02-01T11:00:04|2026-02-01T11:42:04|00:42:00|OUT_OF_MEMORY|0:125|33554432K|02:10:00
7007.extern|extern||ml||8|8|32G||2026-02-01T11:00:04|2026-02-01T11:00:04|2026-02-01T11:42:04|00:42:00|COMPLETED|0:0|1000K|00:00:00
7008|train|erin|ml|gpu|8|8|32G|12:00:00|2026-02-01T11:05:00|2026-02-01T11:05:03|2026-02-01T13:05:03|02:00:00|NODE_FAIL|0:0||07:59:00
7008.batch|batch||ml||8|8|32G||2026-02-01T11:05:03|2026-02-01T11:05:03|2026-02-01T13:05:03|02:00:00|CANCELLED|0:9|20971520K|07:59:00
7009|simulate|carol|physics|preempt|16|16|64G|UNLIMITED|2026-02-01T12:00:00|2026-02-01T12:00:05|2026-02-01T12:30:05|00:30:00|PREEMPTED|0:0||07:58:00
7009.batch|batch||physics||16|16|64G||2026-02-01T12:00:05|2026-02-01T12:00:05|2026-02-01T12:30:06|00:30:01|CANCELLED|0:15|40000000K|07:58:00
7010_1|sweep|frank|chem|short|2|2|4G|Partition_Limit|2026-02-01T13:00:00|2026-02-01T13:00:01|2026-02-01T13:10:01|00:10:00|COMPLETED|0:0||00:19:30
7010_1.batch|batch||chem||2|2|4G||2026-02-01T13:00:01|2026-02-01T13:00:01|2026-02-01T13:10:01|00:10:00|COMPLETED|0:0|512000K|00:19:30
7010_2|sweep|frank|chem|short|2|2|4G|Partition_Limit|2026-02-01T13:00:00|2026-02-01T13:00:01|2026-02-01T13:11:31|00:11:30|COMPLETED|0:0||00:22:40
7010_2.batch|batch||chem||2|2|4G||2026-02-01T13:00:01|2026-02-01T13:00:01|2026-02-01T13:11:31|00:11:30|COMPLETED|0:0|524288K|00:22:40
7010_[3-5]|sweep|frank|chem|short|2|2|4G|Partition_Limit|2026-02-01T13:00:00|Unknown|Unknown|00:00:00|PENDING|0:0||00:00:00
7011|simulate|carol|physics|compute|8|8|8G|02:00:00|2026-02-01T14:00:00|None|2026-02-01T14:30:00|00:00:00|CANCELLED by 1002|0:0||00:00:00
7012|report|gina|finance|short|1|1|1G|00:30:00|2026-02-01T15:00:00|2026-02-01T15:00:02|2026-02-01T15:00:02|00:00:00|BOOT_FAIL|0:0||00:00:00
7013|report|gina|finance|short|1|1|1G|00:30:00|2026-02-01T15:05:00|2026-02-01T15:05:01|2026-02-01T15:35:01|00:30:00|DEADLINE|0:0||00:29:50
7014|mpi_solve|hank|physics|compute|64|64|4000Mn|08:00:00|2026-02-01T16:00:00|2026-02-01T16:00:09|2026-02-01T17:30:09|01:30:00|COMPLETED|0:0||3-23:58:00
7014.batch|batch||physics||32|32|4000Mn||2026-02-01T16:00:09|2026-02-01T16:00:09|2026-02-01T17:30:09|01:30:00|COMPLETED|0:0|150000K|00:00:30
7014.extern|extern||physics||64|64|4000Mn||2026-02-01T16:00:09|2026-02-01T16:00:09|2026-02-01T17:30:09|01:30:00|COMPLETED|0:0|1200K|00:00:00
7014.0|solver||physics||64|64|4000Mn||2026-02-01T16:00:12|2026-02-01T16:00:12|2026-02-01T17:30:05|01:29:53|COMPLETED|0:0|3500000K|3-23:57:30
7015|nightly|ann|genomics|long|16|16|64G|2-00:00:00|2026-02-02T07:55:00|2026-02-02T08:00:00|2026-02-02T08:44:00|00:44:00|REQUEUED|0:0||11:00:00
7015|nightly|ann|genomics|long|16|16|64G|2-00:00:00|2026-02-02T07:55:00|2026-02-02T09:00:00|2026-02-02T10:30:00|01:30:00|COMPLETED|0:0||23:40:00
7015.batch|batch||genomics||16|16|64G||2026-02-02T09:00:00|2026-02-02T09:00:00|2026-02-02T10:30:00|01:30:00|COMPLETED|0:0|60000000K|23:40:00
"""  # noqa: E501 (sacct's lines as it prints them)
SAMPLE = HEADER + "\n" + JOBS
JOB_RECORDS = 18  # lines whose JobID has no step suffix
STEP_LINES = 20


def _write(path: Path, text: str = SAMPLE) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'history.db'}"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def _frame(url: str, pipeline: str) -> pd.DataFrame:
    with HistoryStore(url) as store:
        return store.attempts_frame(pipeline)


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planner", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def test_slurm_durations_sizes_and_states() -> None:
    seconds = {
        "05:07": 307.0,
        "00:00:01.234": 1.234,
        "19:58.250": 1198.25,
        "04:00:17": 14417.0,
        "27:00:00": 97200.0,  # a leading part may pass 24 h
        "1-02:03:04": 93784.0,
        "2-00:00:00": 172800.0,
        "1-02": 93600.0,
        "1-02:03": 93780.0,
        "5-08:00:00": 460800.0,
    }
    assert {text: slurm_duration(text) for text in seconds} == seconds
    for wrong in ("1-xx", "90", "00:61", "1:75:00", "1-25:00:00", "a:b", "", "1--2"):
        assert slurm_duration(wrong) is None, wrong
    assert size_mib("64G") == (65536.0, "")
    assert size_mib("2000Mc") == (2000.0, "c")
    assert size_mib("4000Mn") == (4000.0, "n")
    assert size_mib("52428800K", default_unit="K") == (51200.0, "")
    assert size_mib("lots") is None
    states = {
        "COMPLETED": "succeeded",
        "FAILED": "failed",
        "CANCELLED by 123": "cancelled",
        "CANCELLED+": "cancelled",
        "TIMEOUT": "timed_out",
        "DEADLINE": "timed_out",
        "OUT_OF_MEMORY": "failed",
        "NODE_FAIL": "failed",
        "BOOT_FAIL": "failed",
        "PREEMPTED": "interrupted",
        "REQUEUED": "interrupted",
        "RUNNING": "running",
        "PENDING": "running",
        "SUSPENDED": "running",
        "REVOKED": "cancelled",
    }
    assert {state: map_status(state) for state in states} == states


def test_one_record_per_job_with_its_steps_folded(tmp_path: Path) -> None:
    parsed = parse_sacct(_write(tmp_path / "jobs.txt"))
    assert len(SAMPLE.splitlines()) == 1 + JOB_RECORDS + STEP_LINES == 39
    assert parsed.read == JOB_RECORDS and parsed.folded == STEP_LINES
    assert parsed.malformed_lines == [] and parsed.malformed_reasons == []
    assert parsed.unfinished == 3  # 7005 RUNNING, 7006 PENDING, 7010_[3-5] PENDING
    frame = parsed.frame.set_index("source_key")
    assert len(frame) == 15
    assert frame["run_id"].tolist() == [
        "7001", "7002", "7003", "7004", "7007", "7008", "7009", "7010_1", "7010_2",
        "7011", "7012", "7013", "7014", "7015", "7015",
    ]  # fmt: skip
    assert frame["status"].tolist() == [
        "succeeded", "failed", "cancelled", "timed_out", "failed", "failed", "interrupted",
        "succeeded", "succeeded", "cancelled", "failed", "timed_out", "succeeded",
        "interrupted", "succeeded",
    ]  # fmt: skip

    first = frame.loc["7001@2026-02-01T08:00:05"]
    assert (first["step"], first["account"], first["quantity"]) == ("assemble", "ann", 16.0)
    assert first["duration_s"] == 93_784.0  # 1-02:03:04
    assert first["started_at"] == _ts("2026-02-01 08:00:05")  # no --timezone: UTC
    assert first["finished_at"] == _ts("2026-02-02 10:03:09")
    assert first["exit_code"] == 0 and pd.isna(first["error_class"])
    assert first["params"] == {"partition": "long", "timelimit": 172_800, "reqmem": 65_536}
    assert first["peak_rss_mb"] == 51_200.0  # MaxRSS of its .batch step
    assert first["cpu_s"] == 123_072.0  # TotalCPU 1-10:11:12

    failed = frame.loc["7002@2026-02-01T09:00:01"]
    assert failed["exit_code"] == 1 and failed["params"]["reqmem"] == 8_000  # 2000M x 4 CPUs
    cancelled = frame.loc["7003@2026-02-01T09:01:02"]
    assert cancelled["exit_code"] == 128 + 15 and cancelled["cpu_s"] == 1_198.25
    timeout = frame.loc["7004@2026-02-01T10:00:10"]
    assert timeout["duration_s"] == 14_417.0 and timeout["params"]["timelimit"] == 14_400
    oom = frame.loc["7007@2026-02-01T11:00:04"]
    assert (oom["error_class"], oom["exit_code"]) == ("out_of_memory", 128 + 125)
    assert frame.loc["7008@2026-02-01T11:05:03", "error_class"] == "node_fail"
    assert frame.loc["7012@2026-02-01T15:00:02", "error_class"] == "boot_fail"
    assert "timelimit" not in frame.loc["7009@2026-02-01T12:00:05", "params"]  # UNLIMITED
    assert frame.loc["7010_1@2026-02-01T13:00:01", "params"] == {
        "partition": "short",  # Partition_Limit: no timelimit
        "reqmem": 4_096,
    }
    never = frame.loc["7011@None"]  # cancelled while pending: placed at its end, 0 s
    assert never["started_at"] == never["finished_at"] == _ts("2026-02-01 14:30:00")
    assert never["duration_s"] == 0.0
    mpi = frame.loc["7014@2026-02-01T16:00:09"]
    assert mpi["peak_rss_mb"] == pytest.approx(3_500_000 / 1024)  # its srun step .0
    assert mpi["params"]["reqmem"] == 4_000 and mpi["quantity"] == 64.0
    requeued = frame.loc["7015@2026-02-02T08:00:00"]
    assert requeued["status"] == "interrupted" and requeued["duration_s"] == 2_640.0
    assert pd.isna(requeued["peak_rss_mb"])  # the .batch line follows the second run
    assert frame.loc["7015@2026-02-02T09:00:00", "peak_rss_mb"] == pytest.approx(58_593.75)
    assert str(parsed.frame["started_at"].dtype) == "datetime64[us, UTC]"


def test_cli_imports_once_and_reports_like_csv(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "eagle-jobs.txt")
    code, report = _run(capsys, "import", "sacct", str(path), "--db", db, "--json")
    assert code == 0
    assert report["pipeline"] == "eagle-jobs"
    assert (report["read"], report["imported"], report["duplicates"]) == (18, 15, 0)
    assert (report["malformed"], report["unfinished"]) == (0, 3)
    assert report["span"] == ["2026-02-01T08:00:05+00:00", "2026-02-02T10:30:00+00:00"]
    assert report["accounts"] == 7 and report["steps"] == 8  # dave's job is pending

    code, again = _run(capsys, "import", "sacct", str(path), "--db", db, "--json")
    assert code == 0 and (again["imported"], again["duplicates"]) == (0, 15)

    csv_file = tmp_path / "runs.csv"
    csv_file.write_text("job,at,d\na,2026-01-01 00:00,5\n")
    argv = ["import", "csv", str(csv_file), "--map", "step=job,started_at=at,duration_s=d"]
    code, csv_report = _run(capsys, *argv, "--db", db, "--json")
    assert code == 0 and set(csv_report) == set(report)  # the same keys, `imported` too

    frame = _frame(db, "eagle-jobs")
    assert len(frame) == 15 and (frame["source"] == "sacct").all()
    assert frame["status"].value_counts().to_dict() == {
        "succeeded": 5,
        "failed": 4,
        "timed_out": 2,
        "cancelled": 2,
        "interrupted": 2,
    }
    assert frame.loc[frame["run_id"] == "7001", "duration_s"].tolist() == [93_784.0]

    code = main(["import", "sacct", str(path), "--db", db])  # the human summary
    out = capsys.readouterr().out
    assert code == 0 and "job steps, folded" in out and "20" in out


def test_a_later_export_under_another_name_adds_only_new_jobs(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _write(tmp_path / "day1.txt")
    argv = ["--pipeline", "hpc", "--db", db, "--json"]
    code, report = _run(capsys, "import", "sacct", str(first), *argv)
    assert code == 0 and report["imported"] == 15
    finished = SAMPLE.replace(
        "2026-02-01T14:01:00|Unknown|01:15:00|RUNNING|0:0||00:00:00",
        "2026-02-01T14:01:00|2026-02-01T17:01:00|03:00:00|COMPLETED|0:0||4-00:00:00",
    )
    later = _write(tmp_path / "day2.txt.gz", finished)
    code, report = _run(capsys, "import", "sacct", str(later), *argv)
    assert code == 0
    assert (report["imported"], report["duplicates"], report["unfinished"]) == (1, 15, 2)
    frame = _frame(db, "hpc")
    done = frame[frame["run_id"] == "7005"].iloc[0]
    assert (done["status"], done["duration_s"]) == ("succeeded", 10_800.0)
    assert done["cpu_s"] == 345_600.0


def test_parsable_trailing_bar_timezone_and_few_columns(tmp_path: Path) -> None:
    trailing = "\n".join(line + "|" for line in SAMPLE.splitlines()) + "\n"
    plain = parse_sacct(_write(tmp_path / "a.txt"))
    bar = parse_sacct(_write(tmp_path / "b.txt", trailing))
    pd.testing.assert_frame_equal(plain.frame, bar.frame)

    paris = parse_sacct(_write(tmp_path / "a.txt"), timezone="Europe/Paris").frame
    assert paris["started_at"].iloc[0] == _ts("2026-02-01 07:00:05")  # CET, UTC+1
    assert paris["duration_s"].iloc[0] == 93_784.0

    few = "jobid|jobname|start|elapsed\n1|x|2026-03-01T00:00:00|00:01:30\n1.batch|batch||\n"
    frame = parse_sacct(_write(tmp_path / "few.txt", few)).frame
    row = frame.iloc[0]
    assert (row["run_id"], row["step"], row["duration_s"]) == ("1", "x", 90.0)
    assert row["finished_at"] == _ts("2026-03-01 00:01:30")
    assert row["status"] == "unknown" and pd.isna(row["account"]) and row["params"] == {}


def test_missing_columns_are_named_in_one_line(tmp_path: Path, db: str) -> None:
    cases = {
        "JobID|User|Start|End\n1|a|2026-01-01T00:00:00|2026-01-01T00:01:00\n": "'JobName'",
        "JobID|JobName|Start\n1|a|2026-01-01T00:00:00\n": "'Elapsed' or 'End'",
        "JobID|JobName|Elapsed\n1|a|00:01:00\n": "'Start'",
        "7001|x|2026-01-01T00:00:00\n": "'JobID'",
    }
    for number, (text, missing) in enumerate(cases.items()):
        path = _write(tmp_path / f"bad{number}.txt", text)
        with pytest.raises(InputFileError, match=f"no column {missing}"):
            parse_sacct(path)
    done = _cli("import", "sacct", str(tmp_path / "bad0.txt"), "--db", db, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"planner: error: {tmp_path / 'bad0.txt'}: no column 'JobName': sacct's --format must "
        "include JobID, JobName, Start and Elapsed or End (columns: JobID, User, Start, End)\n"
    )
    done = _cli("import", "sacct", str(tmp_path / "bad3.txt"), "--db", db, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.rstrip().endswith("--noheader?)")
    comma = _write(tmp_path / "comma.csv", "JobID,JobName\n1,a\n")
    done = _cli("import", "sacct", str(comma), "--db", db, cwd=tmp_path)
    assert done.returncode == 2 and "no '|'" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "state").exists()  # nothing was stored anywhere


def test_malformed_values_are_named_and_the_rest_imported(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = (
        SAMPLE.replace("|1-02:03:04|COMPLETED|0:0||1-10:11:12", "|1-xx|COMPLETED|0:0||1-10:11:12")
        .replace("|2000Mc|01:00:00|2026-02-01T09:00:00|", "|2000Mc|soon|2026-02-01T09:00:00|")
        .replace("2026-02-01T15:05:01|2026-02-01T15:35:01", "yesterday|2026-02-01T15:35:01")
        .replace("7014.0|solver|", "7014.0|solver|extra|")
        .replace("7012|report|", "7012x.0|report|")
    )
    path = _write(tmp_path / "broken.txt", broken)
    code, report = _run(capsys, "import", "sacct", str(path), "--db", db, "--json")
    assert code == 0
    assert report["malformed_lines"] == [2, 5, 31, 32, 36]
    assert report["malformed_reasons"] == [
        "line 2: Elapsed '1-xx' is not a duration",
        "line 5: Timelimit 'soon' is not a duration",
        "line 31: JobID '7012x.0' is a step of job '7012x', whose line is not here",
        "line 32: Start 'yesterday' is not a time",
        "line 36: 18 fields, the header has 17",
    ]
    # read: 17 job lines and the 2 lines refused before being read as jobs
    assert (report["read"], report["imported"], report["malformed"]) == (19, 11, 5)
    assert report["unfinished"] == 3

    code = main(["import", "sacct", str(path), "--db", db])
    out = capsys.readouterr().out
    assert code == 0 and "line 2: Elapsed '1-xx' is not a duration" in out


def test_nothing_valid_exits_2_naming_column_and_value(tmp_path: Path, db: str) -> None:
    lines = [HEADER] + [
        f"{9000 + i}|job|ann|acct|p|1|1|1G|01:00:00|2026-02-01T00:00:00|"
        f"2026-02-01T00:{i % 60:02d}:00|2026-02-01T01:00:00|1-02:0{i % 9}|COMPLETED|0:0||"
        for i in range(300)
    ]
    lines[3] = lines[3].replace("|1-02:02|", "|1-xx|")
    path = _write(tmp_path / "jobs.txt", "\n".join(lines) + "\n")
    # D-HH:MM is a Slurm duration: 299 of the 300 jobs import
    done = _cli("import", "sacct", str(path), "--db", db, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["imported"], report["malformed_lines"]) == (299, [4])

    empty = _write(tmp_path / "empty.txt", HEADER + "\n")
    done = _cli("import", "sacct", str(empty), "--db", db, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"planner: error: {empty}: no valid record to import (no data line)\n"

    bad = [lines[0]] + [line.replace("|1-02:0", "|2 days 0") for line in lines[1:]]
    path = _write(tmp_path / "bad.txt", "\n".join(bad) + "\n")
    done = _cli("import", "sacct", str(path), "--db", db, "--json", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"planner: error: {path}: no valid record to import (300 malformed, lines 2, 3, 4, 5, "
        "6, ...): line 2: Elapsed '2 days 00' is not a duration; line 3: Elapsed '2 days 01' "
        "is not a duration; line 4: Elapsed '1-xx' is not a duration\n"
    )
