"""Import a Standard Workload Format log (Parallel Workloads Archive), plain or ``.gz``.

SWF: one job per line, 18 whitespace-separated numeric fields, ``-1`` = missing, header
lines starting with ``;`` (``; Key: value``). Submit times are seconds from the start of
the log; the header's ``UnixStartTime`` (else ``StartTime`` read in ``TimeZoneString`` /
``TimeZone``) makes them absolute UTC times. Without either, times count from
1970-01-01 UTC (relative order and durations stay right).

Mapping to attempts:

=================  ==============================================================
account            user id (field 12)
step               application / executable id (field 14), ``job`` when -1
quantity           requested processors (field 8), else allocated (field 5)
params             ``requested_time`` (9), ``requested_memory`` (10), ``queue``
                   (15), ``partition`` (16), ``group`` (13), each when not -1
started_at         start of log + submit (2) + wait (3; a missing wait counts 0)
duration_s         run time (4); missing -> no duration, no finish time
finished_at        started_at + duration
status             field 11: 1 succeeded, 0 failed, 5 cancelled, else unknown
peak_rss_mb        used memory (7, KB per processor) x allocated processors / 1024
cpu_s              average CPU time (6) x allocated processors
run_id             ``swf-<job number>`` (one run per job)
=================  ==============================================================

Identity: a record is the same as a stored one when its job number (field 1, the
``source_key``) is the same for the same pipeline and source (``swf:<file name>``).

Malformed lines (not 18 numeric fields, a negative or missing submit time, a missing
job number) are skipped and counted with their line numbers; the report says what is
wrong with the first ones (``line 12: field 2 (submit) 'abc' is not a number``).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from planner.learning.importers.common import MALFORMED_SHOWN, ParsedImport, read_lines

__all__ = ["SWF_FIELDS", "parse_swf", "swf_start_time"]

#: The 18 SWF fields, in order.
SWF_FIELDS = (
    "job",
    "submit",
    "wait",
    "run_time",
    "allocated_procs",
    "avg_cpu",
    "used_memory",
    "requested_procs",
    "requested_time",
    "requested_memory",
    "status",
    "user",
    "group",
    "application",
    "queue",
    "partition",
    "preceding_job",
    "think_time",
)

_PARAM_FIELDS = (
    ("requested_time", "requested_time"),
    ("requested_memory", "requested_memory"),
    ("queue", "queue"),
    ("partition", "partition"),
    ("group", "group"),
)
_STATUS = {1: "succeeded", 0: "failed", 5: "cancelled"}
_HEADER = re.compile(r"^;\s*([A-Za-z][A-Za-z0-9_ ]*?)\s*:\s*(.*?)\s*$")


def swf_start_time(header: dict[str, str]) -> datetime:
    """The absolute UTC start of the log from its header (epoch 0 when it says nothing)."""
    unix = header.get("UnixStartTime")
    if unix:
        try:
            return datetime.fromtimestamp(float(unix), UTC)
        except (ValueError, OverflowError, OSError):
            pass
    text = header.get("StartTime")
    if text:
        parts = text.split()
        # "Mon Sep 23 14:00:31 CEST 1996": drop the zone abbreviation, which is ambiguous
        cleaned = " ".join(p for p in parts if not re.fullmatch(r"[A-Z]{2,5}", p))
        for fmt in ("%a %b %d %H:%M:%S %Y", "%Y-%m-%d %H:%M:%S"):
            try:
                local = datetime.strptime(cleaned, fmt)
            except ValueError:
                continue
            return local.replace(tzinfo=_header_zone(header)).astimezone(UTC)
    return datetime(1970, 1, 1, tzinfo=UTC)


def _header_zone(header: dict[str, str]) -> Any:
    name = header.get("TimeZoneString")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    offset = header.get("TimeZone")
    if offset:
        try:
            return timezone(timedelta(seconds=int(float(offset))))
        except ValueError:
            pass
    return UTC


def parse_swf(path: Path) -> ParsedImport:
    """Parse an SWF log into normalised attempt rows (see the module docstring)."""
    import numpy as np
    import pandas as pd

    lines = read_lines(path)
    header: dict[str, str] = {}
    data_lines: list[str] = []
    numbers: list[int] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(";"):
            match = _HEADER.match(stripped)
            if match and match.group(1) not in header:
                header[match.group(1)] = match.group(2)
            continue
        data_lines.append(stripped)
        numbers.append(number)

    line_no = np.asarray(numbers, dtype=np.int64)
    split = [line.split() for line in data_lines]
    ok = np.fromiter(map(len, split), dtype=np.int64, count=len(split)) == len(SWF_FIELDS)
    rows = [fields for fields, fine in zip(split, ok.tolist(), strict=True) if fine]
    try:  # fast path: every token is a number
        matrix = np.array(rows, dtype=np.float64).reshape(-1, len(SWF_FIELDS))
        values = pd.DataFrame(matrix, columns=list(SWF_FIELDS))
    except ValueError:
        table = pd.DataFrame(rows, columns=list(SWF_FIELDS), dtype=object)
        values = table.apply(pd.to_numeric, errors="coerce").astype("float64")
    good = values.notna().all(axis=1).to_numpy()
    good = good & (values["submit"] >= 0).to_numpy() & (values["job"] >= 0).to_numpy()
    ok_lines = line_no[ok]
    malformed = sorted([*line_no[~ok].tolist(), *ok_lines[~good].tolist()])
    values = values[good].reset_index(drop=True)
    kept_lines = ok_lines[good]

    def present(name: str) -> pd.Series:
        column: pd.Series = values[name]
        return column.where(column != -1)

    start = pd.Timestamp(swf_start_time(header))
    wait = present("wait").where(lambda w: w >= 0).fillna(0.0)
    started = start + pd.to_timedelta(values["submit"] + wait, unit="s")
    started = started.astype("datetime64[us, UTC]")
    duration = present("run_time").where(lambda d: d >= 0)
    finished = (started + pd.to_timedelta(duration, unit="s")).astype("datetime64[us, UTC]")
    allocated = present("allocated_procs").where(lambda p: p > 0)
    requested = present("requested_procs").where(lambda p: p > 0)
    quantity = requested.fillna(allocated)
    application = present("application")
    step = application.map(lambda a: f"{int(a)}", na_action="ignore").astype("string")
    step = step.fillna("job")
    user = present("user")
    account = user.map(lambda u: f"{int(u)}", na_action="ignore").astype("string")
    status_code = values["status"].astype("int64")
    status = status_code.map(_STATUS).astype("string").fillna("unknown")
    memory = present("used_memory").where(lambda m: m >= 0)
    cpu = present("avg_cpu").where(lambda c: c >= 0)

    param_columns = {
        name: present(field).map(_number, na_action="ignore").tolist()
        for name, field in _PARAM_FIELDS
    }
    names = list(param_columns)
    params = [
        {n: v for n, v in zip(names, row, strict=True) if v is not None and not math.isnan(v)}
        for row in zip(*param_columns.values(), strict=True)
    ]
    job = values["job"].astype("int64").astype("string")
    frame = pd.DataFrame(
        {
            "source_key": job,
            "run_id": "swf-" + job,
            "step": step.astype("string"),
            "account": account,
            "quantity": quantity.astype("float64"),
            "params": pd.Series(params, dtype=object),
            "started_at": started,
            "finished_at": finished,
            "duration_s": duration.astype("float64"),
            "status": status.astype("string"),
            "exit_code": pd.Series(pd.NA, index=values.index, dtype="Int64"),
            "error_class": pd.Series(pd.NA, index=values.index, dtype="string"),
            "peak_rss_mb": (memory * allocated / 1024.0).astype("float64"),
            "cpu_s": (cpu * allocated).astype("float64"),
            "line": kept_lines,
        }
    )
    reasons = [f"line {n}: {_why(lines[n - 1])}" for n in malformed[:MALFORMED_SHOWN]]
    return ParsedImport(
        frame=frame, read=len(data_lines), malformed_lines=malformed, malformed_reasons=reasons
    )


def _why(line: str) -> str:
    """What is wrong with a malformed SWF line."""
    tokens = line.split()
    if len(tokens) != len(SWF_FIELDS):
        return f"{len(tokens)} fields, expected {len(SWF_FIELDS)}"
    for number, (name, token) in enumerate(zip(SWF_FIELDS, tokens, strict=True), start=1):
        try:
            value = float(token)
        except ValueError:
            return f"field {number} ({name}) {token!r} is not a number"
        if math.isnan(value):
            return f"field {number} ({name}) {token!r} is not a number"
    if float(tokens[1]) < 0:
        return f"field 2 (submit) {tokens[1]!r} is negative (missing)"
    return f"field 1 (job) {tokens[0]!r} is negative (missing)"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)
