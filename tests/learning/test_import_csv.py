"""The CSV parser: mapping, times and zones, statuses, malformed rows, identity, real files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from planner.errors import InputFileError, UsageError
from planner.learning.importers import map_status, parse_csv, parse_mapping

JULIA_MAP = "step=job,run_id=build,started_at=created_at,duration_s=duration_s"
EAGLE_MAP = (
    "step=name,account=user,quantity=processors_req,run_id=job_id,started_at=start_time,"
    "finished_at=end_time,status=state,param.partition=partition,param.qos=qos,"
    "param.wallclock_req=wallclock_req,param.nodes=nodes_req"
)


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_mapping_parses_and_names_unknown_fields() -> None:
    assert parse_mapping(" step=job , duration_s=d,param.region=r,started_at=s") == {
        "step": "job",
        "duration_s": "d",
        "param.region": "r",
        "started_at": "s",
    }
    with pytest.raises(UsageError, match=r"unknown field\(s\) 'stepp', 'param\.'") as info:
        parse_mapping("stepp=a,param.=b,started_at=c")
    assert info.value.where == "--map"
    with pytest.raises(UsageError, match="field=column"):
        parse_mapping("step")
    with pytest.raises(UsageError, match="twice"):
        parse_mapping("step=a,step=b,started_at=c")
    with pytest.raises(UsageError, match="needs started_at"):
        parse_mapping("step=a,duration_s=d")
    assert "finished_at" in parse_mapping("finished_at=f,duration_s=d")


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputFileError, match=r"no column\(s\) 'job', 'when'") as info:
        parse_csv(path, parse_mapping("step=job,started_at=when,quantity=a"))
    assert info.value.where == str(path)
    with pytest.raises(InputFileError, match="no such file"):
        parse_csv(tmp_path / "absent.csv", parse_mapping("started_at=a"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputFileError, match="empty"):
        parse_csv(tmp_path / "empty.csv", parse_mapping("started_at=a"))


def test_statuses_from_slurm_ci_and_exit_codes() -> None:
    expected = {
        "COMPLETED": "succeeded",
        "FAILED": "failed",
        "TIMEOUT": "timed_out",
        "CANCELLED by 12345": "cancelled",
        "CANCELLED+": "cancelled",
        "OUT_OF_MEMORY": "failed",
        "NODE_FAIL": "failed",
        "PREEMPTED": "interrupted",
        "passed": "succeeded",
        "Success": "succeeded",
        "timed_out": "timed_out",
        "what": "unknown",
        "": "unknown",
    }
    assert {word: map_status(word) for word in expected} == expected


CRAFTED = """run,name,who,n,start,end,secs,state,exit,region,size
r1,load,alice,3,2026-03-01 10:00:00,2026-03-01 10:05:00,,COMPLETED,0:0,eu,1.5
r1,load,bob,,2026-03-01 10:00:00,,90,OUT_OF_MEMORY,0:9,us,2
r2,load,alice,3,,2026-03-01 11:00:00,600,CANCELLED by 501,,eu,3
r2,load,bob,x,2026-03-01 11:00:00,,60,FAILED,1,eu,4
r3,load,alice,1,yesterday,,60,COMPLETED,0,eu,5
r3,load,alice,1,2026-03-01 12:00:00,,60
r3,load,alice,1,2026-03-01 12:00:00,,,,2,eu,6
r4,load,carol,1,2026-03-01T12:00:00+02:00,,-5,,,eu,7
r4,load,carol,1,"2026-03-01T12:00:00+02:00",,30,,,,
"""


def _crafted(tmp_path: Path, name: str = "runs.csv", text: str = CRAFTED) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


FULL_MAP = (
    "run_id=run,step=name,account=who,quantity=n,started_at=start,finished_at=end,"
    "duration_s=secs,status=state,exit_code=exit,param.region=region,param.size=size"
)


def test_fields_times_and_malformed_rows(tmp_path: Path) -> None:
    parsed = parse_csv(_crafted(tmp_path), parse_mapping(FULL_MAP))
    assert parsed.read == 9
    # line 5: quantity "x"; 6: time "yesterday"; 7: too few fields; 9: negative duration
    assert parsed.malformed_lines == [5, 6, 7, 9]
    frame = parsed.frame.set_index("line")
    assert list(frame.index) == [2, 3, 4, 8, 10]

    first = frame.loc[2]
    assert (first["run_id"], first["step"], first["account"]) == ("r1", "load", "alice")
    assert first["quantity"] == 3.0
    assert first["duration_s"] == 300.0  # finished - started
    assert first["status"] == "succeeded" and first["exit_code"] == 0
    assert first["params"] == {"region": "eu", "size": 1.5}

    second = frame.loc[3]
    assert second["finished_at"] == _ts("2026-03-01 10:01:30")  # started + duration
    assert second["status"] == "failed" and second["error_class"] == "out_of_memory"
    assert second["params"] == {"region": "us", "size": 2}
    assert pd.isna(second["quantity"])

    third = frame.loc[4]
    assert third["started_at"] == _ts("2026-03-01 10:50:00")  # finished - duration
    assert third["status"] == "cancelled" and pd.isna(third["exit_code"])

    eighth = frame.loc[8]
    assert eighth["status"] == "failed"  # no status: exit code 2 decides
    assert eighth["exit_code"] == 2

    last = frame.loc[10]
    assert last["started_at"] == _ts("2026-03-01 10:00:00")  # +02:00 converted to UTC
    assert last["status"] == "unknown" and last["params"] == {}
    assert str(parsed.frame["started_at"].dtype) == "datetime64[us, UTC]"
    assert parsed.frame["source_key"].is_unique


def test_times_without_zone_follow_the_timezone_option(tmp_path: Path) -> None:
    path = _crafted(tmp_path, text="job,at,d\na,2026-07-01 12:00,10\nb,2026-01-15 12:00,10\n")
    mapping = parse_mapping("step=job,started_at=at,duration_s=d")
    utc = parse_csv(path, mapping).frame["started_at"].tolist()
    assert utc == [_ts("2026-07-01 12:00"), _ts("2026-01-15 12:00")]
    paris = parse_csv(path, mapping, timezone="Europe/Paris").frame["started_at"].tolist()
    assert paris == [_ts("2026-07-01 10:00"), _ts("2026-01-15 11:00")]  # CEST, CET
    with pytest.raises(UsageError, match="unknown time zone"):
        parse_csv(path, mapping, timezone="Mars/Olympus")


def test_time_format_and_epoch(tmp_path: Path) -> None:
    path = _crafted(tmp_path, text="job,at,d\na,01/07/2026 12:00,10\nb,13/07/2026 08:30,10\n")
    mapping = parse_mapping("step=job,started_at=at,duration_s=d")
    frame = parse_csv(path, mapping, time_format="%d/%m/%Y %H:%M").frame
    assert frame["started_at"].tolist() == [_ts("2026-07-01 12:00"), _ts("2026-07-13 08:30")]
    epoch = _crafted(tmp_path, "e.csv", "job,at,d\na,1767225600,10\nb,soon,10\n")
    parsed = parse_csv(epoch, mapping, time_format="epoch")
    assert parsed.frame["started_at"].tolist() == [_ts("2026-01-01 00:00")]
    assert parsed.malformed_lines == [3]


def test_identical_rows_are_kept_apart_and_keys_are_stable(tmp_path: Path) -> None:
    text = "job,at,d\na,2026-01-01 00:00,5\na,2026-01-01 00:00,5\nb,2026-01-01 00:00,5\n"
    mapping = parse_mapping("step=job,started_at=at,duration_s=d")
    first = parse_csv(_crafted(tmp_path, text=text), mapping).frame
    again = parse_csv(_crafted(tmp_path, "copy.csv.gz", text=text), mapping).frame
    assert first["source_key"].is_unique and len(first) == 3
    assert first["source_key"].tolist() == again["source_key"].tolist()
    assert first["run_id"].str.startswith("csv-").all() and first["run_id"].is_unique
    assert (first["step"] == ["a", "a", "b"]).all()


def test_gzip_and_plain_give_the_same_rows(tmp_path: Path) -> None:
    mapping = parse_mapping(FULL_MAP)
    plain = parse_csv(_crafted(tmp_path), mapping)
    packed = parse_csv(_crafted(tmp_path, "runs.csv.gz"), mapping)
    pd.testing.assert_frame_equal(plain.frame, packed.frame)


@pytest.mark.realdata
def test_the_real_julia_ci_durations(shared_data: Path) -> None:
    parsed = parse_csv(shared_data / "julia-ci-durations.csv.gz", parse_mapping(JULIA_MAP))
    frame = parsed.frame
    assert parsed.read == 8_640 and parsed.malformed_lines == []
    assert frame["step"].nunique() == 102
    assert frame["source_key"].is_unique
    assert frame["started_at"].min() >= _ts("2024-12-01")
    assert frame["started_at"].max() < _ts("2026-01-01")
    assert (frame["duration_s"] >= 0).all() and frame["account"].isna().all()
    first = frame.iloc[0]
    assert first["run_id"] == "994" and first["duration_s"] == 730.0
    assert first["finished_at"] == _ts("2024-12-27 08:12:10")


@pytest.mark.realdata
def test_the_real_slurm_export(shared_data: Path) -> None:
    parsed = parse_csv(shared_data / "nrel-eagle-sample.csv", parse_mapping(EAGLE_MAP))
    frame = parsed.frame
    assert parsed.read == 1_000 and parsed.malformed_lines == []
    assert frame["status"].value_counts().to_dict() == {"succeeded": 985, "timed_out": 15}
    first = frame.iloc[0]
    assert first["run_id"] == "532209" and first["account"] == "user0014"
    assert first["duration_s"] == 99_825.0  # end - start; the file's run_time agrees
    assert first["params"] == {
        "partition": "partition001",
        "qos": "normal",
        "wallclock_req": 172800,
        "nodes": 10,
    }
    raw = pd.read_csv(shared_data / "nrel-eagle-sample.csv")
    assert (frame["duration_s"].to_numpy() == raw["run_time"].to_numpy()).all()


def test_semicolon_and_tab_separated_files(tmp_path: Path) -> None:
    mapping = parse_mapping("step=job,started_at=at,duration_s=d,param.note=note")
    semi = _crafted(tmp_path, "s.csv", 'job;at;d;note\na;2026-01-01 00:00;5;"x;y"\n')
    tab = _crafted(tmp_path, "t.tsv.gz", "job\tat\td\tnote\na\t2026-01-01 00:00\t5\tx;y\n")
    for path in (semi, tab):
        frame = parse_csv(path, mapping).frame
        assert frame["params"].tolist() == [{"note": "x;y"}]
        assert frame["duration_s"].tolist() == [5.0]


SACCT_MAP = "run_id=JobID,step=JobName,account=User,started_at=Start,finished_at=End,status=State"


def test_run_id_rows_are_identified_by_run_step_account_start(tmp_path: Path) -> None:
    text = (
        "JobID,JobName,User,Start,End,State,Partition\n"
        "11,sim,ann,2026-02-01T10:00:00,2026-02-01T11:00:00,COMPLETED,big\n"
        "12,sim,ann,2026-02-01T10:05:00,Unknown,RUNNING,big\n"
        "13,sim,bob,Unknown,Unknown,PENDING,small\n"
    )
    parsed = parse_csv(_crafted(tmp_path, "sacct.csv", text), parse_mapping(SACCT_MAP))
    assert parsed.read == 3 and parsed.malformed_lines == [] and parsed.unfinished == 2
    assert parsed.frame["run_id"].tolist() == ["11"]
    with_param = parse_csv(
        _crafted(tmp_path, "sacct.csv", text), parse_mapping(SACCT_MAP + ",param.p=Partition")
    )
    # a new param column changes nothing in the identity of a row
    assert with_param.frame["source_key"].tolist() == parsed.frame["source_key"].tolist()
    assert with_param.frame["params"].tolist() == [{"p": "big"}]


def test_malformed_rows_say_which_column_and_value(tmp_path: Path) -> None:
    parsed = parse_csv(_crafted(tmp_path), parse_mapping(FULL_MAP))
    assert parsed.malformed_reasons == [
        "line 5: n 'x' is not a number",
        "line 6: start 'yesterday' is not a time",
        "line 7: 7 fields, the header has 11",
        "line 9: secs '-5' is a negative duration",
    ]
    text = (
        "job,start,end,secs,exit\n"
        "a,2026-01-01 10:00,2026-01-01 09:00,,0\n"
        "a,,Unknown,,0\n"
        "a,2026-01-01 10:00,,,zero\n"
        "a,2026-01-01 10:00,,5,3:0\n"
    )
    mapping = parse_mapping(
        "step=job,started_at=start,finished_at=end,duration_s=secs,exit_code=exit"
    )
    parsed = parse_csv(_crafted(tmp_path, "more.csv", text), mapping)
    assert parsed.malformed_reasons == [
        "line 2: end '2026-01-01 09:00' is before start '2026-01-01 10:00'",
        "line 3: no start time (start '', end 'Unknown', secs '')",
        "line 4: exit 'zero' is not an exit code",
    ]
    assert parsed.frame["exit_code"].tolist() == [3]


def test_slurm_durations_limits_and_exit_signals(tmp_path: Path) -> None:
    text = (
        "JobID|JobName|Start|Elapsed|Timelimit|State|ExitCode\n"
        "1|a|2026-02-01T10:00:00|1-02:03:04|2-00:00:00|COMPLETED|0:0\n"
        "2|a|2026-02-01T10:00:00|05:07|UNLIMITED|CANCELLED by 123|0:9\n"
        "3|a|2026-02-01T10:00:00|00:00:01.234|Partition_Limit|TIMEOUT|0:15\n"
        "4|a|2026-02-01T10:00:00|1-02|1-02:03|DEADLINE|0:0\n"
        "5|a|2026-02-01T10:00:00|42|INVALID|REQUEUED|2:0\n"
        "6|a|2026-02-01T10:00:00|INVALID|00:30:00|BOOT_FAIL|1:0\n"
        "7|a|2026-02-01T10:00:00|00:00:00|1-00:00:00|PENDING|0:0\n"
    )
    mapping = parse_mapping(
        "run_id=JobID,step=JobName,started_at=Start,duration_s=Elapsed,status=State,"
        "exit_code=ExitCode,param.timelimit=Timelimit"
    )
    parsed = parse_csv(_crafted(tmp_path, "sacct.txt", text), mapping)
    assert parsed.malformed_lines == [] and parsed.unfinished == 1
    frame = parsed.frame
    assert frame["duration_s"].tolist()[:5] == [93_784.0, 307.0, 1.234, 93_600.0, 42.0]
    assert pd.isna(frame["duration_s"].iloc[5])  # INVALID: no value
    assert frame["status"].tolist() == [
        "succeeded", "cancelled", "timed_out", "timed_out", "interrupted", "failed",
    ]  # fmt: skip
    assert frame["exit_code"].tolist() == [0, 137, 143, 0, 2, 1]  # N:S -> 128 + S
    assert frame["error_class"].iloc[5] == "boot_fail"
    assert frame["params"].tolist() == [
        {"timelimit": 172_800}, {}, {}, {"timelimit": 93_780}, {}, {"timelimit": 1_800},
    ]  # fmt: skip


def test_a_numeric_param_keeps_its_numbers_when_some_are_limit_words(tmp_path: Path) -> None:
    text = (
        "job,at,d,limit,part\n"
        "a,2026-01-01 00:00,5,2880,UNLIMITED\n"
        "b,2026-01-01 00:00,5,UNLIMITED,x\n"
    )
    mapping = parse_mapping("step=job,started_at=at,duration_s=d,param.limit=limit,param.part=part")
    frame = parse_csv(_crafted(tmp_path, "p.csv", text), mapping).frame
    assert frame["params"].tolist() == [
        {"limit": 2880, "part": "UNLIMITED"},  # a text column stays text
        {"part": "x"},
    ]
