"""The SWF parser on crafted logs and on the real KTH-SP2 log."""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from planner.learning.importers import default_pipeline_name, parse_swf
from planner.learning.importers.swf import swf_start_time

HEADER = """; Version: 2.2
; Computer: test machine
; UnixStartTime: 1000000000
; TimeZoneString: Europe/Stockholm
; StartTime: Sun Sep 09 03:46:40 CEST 2001
;
"""
# job submit wait run alloc cpu mem reqp reqt reqm status user group app queue part prec think
JOBS = [
    "1 0 10 100 4 90 2048 4 3600 -1 1 7 2 3 1 -1 -1 -1",  # line 7
    "2 60 -1 50 8 -1 -1 -1 -1 -1 0 7 -1 -1 -1 -1 -1 -1",  # missing wait, requested procs
    "3 120 5 -1 2 -1 -1 2 600 -1 5 9 -1 -1 2 4 -1 -1",  # missing run time, cancelled
    "4 180 0 30 1 -1 -1 1 60 -1 3 9 -1 -1 -1 -1 -1 -1",  # status 3 = unknown
    "5 240 0 30 1 -1 -1 1 60 -1 1 9 -1 -1 -1 -1 -1",  # 17 fields: malformed (line 11)
    "6 abc 0 30 1 -1 -1 1 60 -1 1 9 -1 -1 -1 -1 -1 -1",  # not a number (line 12)
    "7 -1 0 30 1 -1 -1 1 60 -1 1 9 -1 -1 -1 -1 -1 -1",  # no submit time (line 13)
    "8 300 0 30 1 -1 -1 1 60.5 -1 -1 -1 -1 -1 -1 -1 -1 -1",  # status/user missing
]


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_fields_map_to_attempts(tmp_path: Path) -> None:
    parsed = parse_swf(_write(tmp_path / "log.swf", HEADER + "\n".join(JOBS) + "\n"))
    assert parsed.read == 8
    assert parsed.malformed_lines == [11, 12, 13]
    frame = parsed.frame.set_index("source_key")
    assert list(frame.index) == ["1", "2", "3", "4", "8"]
    start = datetime.fromtimestamp(1_000_000_000, UTC)

    one = frame.loc["1"]
    assert one["run_id"] == "swf-1" and one["line"] == 7
    assert one["step"] == "3" and one["account"] == "7"
    assert one["quantity"] == 4.0
    assert one["params"] == {"requested_time": 3600, "queue": 1, "group": 2}
    assert one["started_at"] == pd.Timestamp(start) + pd.Timedelta(seconds=10)
    assert one["finished_at"] == pd.Timestamp(start) + pd.Timedelta(seconds=110)
    assert one["duration_s"] == 100.0 and one["status"] == "succeeded"
    assert one["peak_rss_mb"] == pytest.approx(2048 * 4 / 1024)
    assert one["cpu_s"] == pytest.approx(90 * 4)

    two = frame.loc["2"]
    assert two["step"] == "job"  # no application id
    assert two["quantity"] == 8.0  # allocated when requested is missing
    assert two["started_at"] == pd.Timestamp(start) + pd.Timedelta(seconds=60)  # wait 0
    assert two["status"] == "failed" and two["params"] == {}

    three = frame.loc["3"]
    assert three["status"] == "cancelled"
    assert math.isnan(three["duration_s"]) and pd.isna(three["finished_at"])
    assert three["params"] == {"requested_time": 600, "queue": 2, "partition": 4}

    assert frame.loc["4", "status"] == "unknown"
    eight = frame.loc["8"]
    assert eight["status"] == "unknown" and pd.isna(eight["account"])
    assert eight["params"] == {"requested_time": 60.5}
    assert str(parsed.frame["started_at"].dtype) == "datetime64[us, UTC]"


def test_gzip_and_plain_give_the_same_rows(tmp_path: Path) -> None:
    text = HEADER + "\n".join(JOBS) + "\n"
    plain = parse_swf(_write(tmp_path / "a.swf", text))
    packed = parse_swf(_write(tmp_path / "a.swf.gz", text))
    pd.testing.assert_frame_equal(plain.frame, packed.frame)
    assert packed.malformed_lines == plain.malformed_lines


def test_start_time_from_the_header_and_its_time_zone() -> None:
    assert swf_start_time({"UnixStartTime": "843480031"}) == datetime(
        1996, 9, 23, 12, 0, 31, tzinfo=UTC
    )
    # no UnixStartTime: the local StartTime in TimeZoneString (CEST = UTC+2 in September)
    header = {"StartTime": "Mon Sep 23 14:00:31 CEST 1996", "TimeZoneString": "Europe/Stockholm"}
    assert swf_start_time(header) == datetime(1996, 9, 23, 12, 0, 31, tzinfo=UTC)
    # in January the same zone is UTC+1
    header["StartTime"] = "Thu Jan 16 14:00:00 CET 1997"
    assert swf_start_time(header) == datetime(1997, 1, 16, 13, 0, tzinfo=UTC)
    # the old numeric TimeZone header (seconds east of UTC)
    assert swf_start_time({"StartTime": "Thu Jan 16 14:00:00 1997", "TimeZone": "-18000"}) == (
        datetime(1997, 1, 16, 19, 0, tzinfo=UTC)
    )
    assert swf_start_time({}) == datetime(1970, 1, 1, tzinfo=UTC)


def test_a_log_without_start_header_counts_from_the_epoch(tmp_path: Path) -> None:
    parsed = parse_swf(_write(tmp_path / "bare.swf", JOBS[0] + "\n"))
    assert parsed.frame["started_at"].iloc[0] == pd.Timestamp("1970-01-01 00:00:10", tz="UTC")


def test_pipeline_name_drops_data_extensions() -> None:
    assert default_pipeline_name(Path("KTH-SP2-1996-2.1-cln.swf.gz")) == "KTH-SP2-1996-2.1-cln"
    assert default_pipeline_name(Path("/x/julia-ci-durations.csv.gz")) == "julia-ci-durations"
    assert default_pipeline_name(Path("runs.v2.csv")) == "runs.v2"
    assert default_pipeline_name(Path(".csv")) == ".csv"


@pytest.mark.realdata
def test_the_real_kth_log(shared_data: Path) -> None:
    parsed = parse_swf(shared_data / "KTH-SP2-1996-2.1-cln.swf.gz")
    frame = parsed.frame
    assert parsed.read == 28_476 and parsed.malformed_lines == []
    assert len(frame) == 28_476 and frame["source_key"].is_unique
    assert frame["account"].nunique() == 214
    assert (frame["step"] == "job").all()  # KTH has no application ids
    assert frame["status"].value_counts().to_dict() == {"succeeded": 20_530, "failed": 7_946}
    log_start = pd.Timestamp("1996-09-23 12:00:31", tz="UTC")  # UnixStartTime 843480031
    assert frame["started_at"].min() >= log_start
    assert frame["started_at"].max() < pd.Timestamp("1997-09-01", tz="UTC")
    assert (frame["duration_s"] >= 0).all()
    assert (
        (frame["finished_at"] - frame["started_at"]).dt.total_seconds().equals(frame["duration_s"])
    )
    assert frame["quantity"].dropna().between(1, 100).all()
    assert frame["quantity"].isna().sum() == 1  # job 27313: neither requested nor allocated
    assert all("requested_time" in p for p in frame["params"].head(100))
