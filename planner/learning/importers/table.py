"""Import any table of runs from a CSV file (plain or ``.gz``): Slurm ``sacct`` exports,
CI job durations, cron logs.

``--map field=column,...`` says which column feeds which field:

``step``, ``account``, ``quantity``, ``run_id``, ``started_at``, ``finished_at``,
``duration_s``, ``status``, ``exit_code``, and ``param.NAME`` for any other feature.
Unmapped fields are empty. The separator is a comma, or the semicolon, tab or bar when
the header line has more of those. A start time is required, directly (``started_at``)
or from ``finished_at`` and ``duration_s``. The duration comes from ``duration_s``, else
from finished - started; the finish time from started + duration.

Times: ISO 8601 by default (or ``--time-format``, a ``strptime`` format, or ``epoch`` for
Unix seconds); a time without a zone is in ``--timezone`` (default UTC); a time with an
offset is converted to UTC; a local time that a DST change skips or repeats is malformed.

Status: our own words, Slurm states (``COMPLETED``, ``FAILED``, ``TIMEOUT``,
``CANCELLED by ...``, ``OUT_OF_MEMORY``, ``NODE_FAIL``, ...) and CI words (passed,
success, error, ...) are mapped; without a status column the exit code decides (0
succeeded, else failed); otherwise ``unknown``. A Slurm ``ExitCode`` of the form ``2:0``
keeps its first number. ``step`` defaults to ``job`` when unmapped.

Identity: a row is the same as a stored one when the ``source_key`` matches, for the same
pipeline and source (``csv:<file name>``). With a ``run_id`` column the key is the sha1 of
the raw text of the row's run_id, step, account, started_at and finished_at (those
mapped), so adding a ``param.`` column later does not duplicate rows; without one it is
the sha1 of every mapped field. Either way the row's occurrence number among rows with
the same key in the file is part of it: identical rows within one file are kept apart,
and re-importing the file adds nothing. Without a ``run_id`` column each row is its own
run, ``csv-<first 12 hex digits of the key>``. Rows of jobs still running or pending
(Slurm ``RUNNING``, ``PENDING``, ``REQUEUED``, ``SUSPENDED``...) are not history yet:
they are skipped and counted as ``unfinished``, to be imported by a later export.

In time and number columns, ``Unknown``, ``None``, ``N/A``, ``NA``, ``null`` and ``-``
mean no value.

Malformed rows (a wrong number of fields, a time, number or duration that does not parse,
no start time) are skipped and counted with their line numbers (the header is line 1).
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from planner.errors import InputFileError, UsageError
from planner.learning.importers.common import ParsedImport, open_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CSV_FIELDS", "map_status", "parse_csv", "parse_mapping"]

#: Fields a column can be mapped to (plus ``param.NAME``).
CSV_FIELDS = (
    "step",
    "account",
    "quantity",
    "run_id",
    "started_at",
    "finished_at",
    "duration_s",
    "status",
    "exit_code",
)

_STATUS_WORDS = {
    "succeeded": "succeeded",
    "success": "succeeded",
    "successful": "succeeded",
    "completed": "succeeded",
    "complete": "succeeded",
    "passed": "succeeded",
    "pass": "succeeded",
    "ok": "succeeded",
    "done": "succeeded",
    "failed": "failed",
    "failure": "failed",
    "fail": "failed",
    "error": "failed",
    "errored": "failed",
    "broken": "failed",
    "out_of_memory": "failed",
    "oom": "failed",
    "node_fail": "failed",
    "boot_fail": "failed",
    "deadline": "timed_out",
    "timeout": "timed_out",
    "timed_out": "timed_out",
    "timedout": "timed_out",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "aborted": "cancelled",
    "revoked": "cancelled",
    "preempted": "interrupted",
    "interrupted": "interrupted",
    "skipped": "skipped",
    "running": "running",
    "pending": "running",
    "requeued": "running",
    "suspended": "running",
    "configuring": "running",
    "completing": "running",
    "resizing": "running",
}
#: How exports write "no value" in time and number columns (sacct: Unknown, None).
_ABSENT = frozenset({"unknown", "none", "n/a", "na", "nan", "nat", "null", "-"})
#: With a run_id column, these fields (their raw text) identify a row.
_IDENTITY = ("run_id", "step", "account", "started_at", "finished_at")
_ERROR_CLASS = {"out_of_memory": "out_of_memory", "oom": "out_of_memory", "node_fail": "node_fail"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def parse_mapping(text: str) -> dict[str, str]:
    """``"step=job,duration_s=dur"`` as ``{"step": "job", "duration_s": "dur"}``.

    Raises :class:`UsageError` naming every unknown field."""
    mapping: dict[str, str] = {}
    unknown: list[str] = []
    for item in text.split(","):
        part = item.strip()
        if not part:
            continue
        name, eq, column = part.partition("=")
        name, column = name.strip(), column.strip()
        if not eq or not name or not column:
            raise UsageError("--map", f"expected field=column, got {part!r}")
        is_param = name.startswith("param.") and _NAME.match(name[6:] or "-")
        if name not in CSV_FIELDS and not is_param:
            unknown.append(name)
            continue
        if name in mapping:
            raise UsageError("--map", f"field {name!r} is mapped twice")
        mapping[name] = column
    if unknown:
        allowed = ", ".join(CSV_FIELDS) + ", param.NAME"
        raise UsageError(
            "--map", f"unknown field(s) {', '.join(map(repr, unknown))} (allowed: {allowed})"
        )
    if not mapping:
        raise UsageError("--map", "maps no field")
    if "started_at" not in mapping and not {"finished_at", "duration_s"} <= mapping.keys():
        raise UsageError(
            "--map", "needs started_at, or finished_at and duration_s, to place each run in time"
        )
    return mapping


def map_status(raw: str) -> str:
    """One status word (ours, Slurm's or a CI system's) as one of our statuses."""
    word = raw.strip().lower().replace(" ", "_").replace("-", "_")
    if not word:
        return "unknown"
    if word in _STATUS_WORDS:
        return _STATUS_WORDS[word]
    first = re.split(r"[_+(]", word, maxsplit=1)[0]  # "cancelled_by_123", "cancelled+"
    return _STATUS_WORDS.get(first, "unknown")


def _read_table(path: Path) -> tuple[list[str], list[list[str]], list[int], list[int], int]:
    """Header, good rows, their line numbers, malformed line numbers, rows read."""
    try:
        with open_text(path) as handle:
            first = handle.readline()
            handle.seek(0)
            reader = csv.reader(handle, delimiter=_delimiter(first))
            try:
                header = next(reader)
            except StopIteration:
                raise InputFileError(str(path), "empty file: no header line") from None
            width = len(header)
            rows: list[list[str]] = []
            lines: list[int] = []
            bad: list[int] = []
            read = 0
            line = reader.line_num
            for row in reader:
                start, line = line + 1, reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                read += 1
                if len(row) != width:
                    bad.append(start)
                    continue
                rows.append(row)
                lines.append(start)
    except csv.Error as exc:
        raise InputFileError(str(path), f"not a CSV file: {exc}") from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(str(path), f"cannot read: {exc}") from None
    return [h.strip().lstrip("\ufeff") for h in header], rows, lines, bad, read


def _delimiter(header_line: str) -> str:
    """The header's separator: comma unless it has more semicolons, tabs or bars."""
    counts = {sep: header_line.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > counts[","] else ","


def _zone(name: str | None) -> Any:
    if not name or name.upper() == "UTC":
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError("--timezone", f"unknown time zone {name!r}") from None
    return name


def _times(raw: pd.Series, time_format: str | None, zone: str) -> pd.Series:
    """Text times as ``datetime64[us, UTC]``; what does not parse is NaT."""
    import pandas as pd

    if time_format == "epoch":
        seconds = pd.to_numeric(raw, errors="coerce")
        return pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[us, UTC]")
    parsed = _parse_times(raw, time_format or "ISO8601", zone)
    if time_format is None:
        retry = raw[parsed.isna() & raw.ne("")]
        if not retry.empty:
            parsed = parsed.fillna(_parse_times(retry, "mixed", zone))
    return parsed


def _parse_times(raw: pd.Series, fmt: str, zone: str) -> pd.Series:
    import pandas as pd

    try:
        parsed = pd.to_datetime(raw, format=fmt, errors="coerce")
    except ValueError:  # mixed offsets: convert each value with a zone to UTC
        parsed = pd.to_datetime(raw, format=fmt, errors="coerce", utc=True)
    if not isinstance(parsed.dtype, pd.DatetimeTZDtype) and parsed.dtype.kind != "M":
        parsed = pd.to_datetime(parsed, errors="coerce", utc=True)
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    return parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def parse_csv(
    path: Path,
    mapping: Mapping[str, str],
    *,
    time_format: str | None = None,
    timezone: str | None = None,
) -> ParsedImport:
    """Parse a CSV table of runs into normalised attempt rows (see the module docstring).

    Raises :class:`InputFileError` when a mapped column is missing from the header."""
    import numpy as np
    import pandas as pd

    zone = _zone(timezone)
    header, rows, lines, bad, read = _read_table(path)
    missing = [column for column in mapping.values() if column not in header]
    if missing:
        raise InputFileError(
            str(path),
            f"no column(s) {', '.join(map(repr, missing))} (columns: {', '.join(header)})",
        )
    index = {name: i for i, name in enumerate(header)}
    fields = list(mapping)
    raw = pd.DataFrame(
        {f: pd.Series([r[index[mapping[f]]] for r in rows], dtype="string") for f in fields}
    )
    raw = raw.apply(lambda s: s.str.strip()) if fields else raw
    line_no = np.asarray(lines, dtype=np.int64)
    n = len(rows)
    invalid = np.zeros(n, dtype=bool)

    def text(name: str) -> pd.Series:
        if name in raw:
            column: pd.Series = raw[name].mask(raw[name] == "")
            return column
        return pd.Series(pd.NA, index=range(n), dtype="string")

    def absent_as_na(values: pd.Series) -> pd.Series:
        return values.mask(values.str.lower().isin(_ABSENT))

    def number(name: str) -> pd.Series:
        nonlocal invalid
        values = absent_as_na(text(name))
        out = pd.to_numeric(values, errors="coerce").astype("float64")
        invalid |= (values.notna() & out.isna()).to_numpy()
        return out

    def time(name: str) -> pd.Series:
        nonlocal invalid
        values = absent_as_na(text(name))
        out = _times(values.fillna(""), time_format, zone)
        invalid |= (values.notna() & out.isna()).to_numpy()
        return out

    started = time("started_at")
    finished = time("finished_at")
    duration = number("duration_s")
    quantity = number("quantity")
    duration = duration.fillna((finished - started).dt.total_seconds())
    started = started.fillna(finished - pd.to_timedelta(duration, unit="s"))
    finished = finished.fillna(started + pd.to_timedelta(duration, unit="s"))
    invalid |= (duration < 0).to_numpy()

    exit_text = text("exit_code").str.split(":", n=1).str[0]
    exit_code = pd.to_numeric(exit_text, errors="coerce")
    invalid |= (exit_text.notna() & exit_code.isna()).to_numpy()
    status_text = text("status")
    words = status_text.dropna().unique()
    status_map = {w: map_status(w) for w in words}
    status = status_text.map(status_map, na_action="ignore").astype("string")
    from_exit = exit_code.map(lambda c: "succeeded" if c == 0 else "failed", na_action="ignore")
    status = status.fillna(from_exit.astype("string")).fillna("unknown")
    lowered = status_text.str.lower().str.replace(" ", "_").str.split(r"[_+(]", n=1, regex=True)
    error_class = status_text.str.lower().map(_ERROR_CLASS, na_action="ignore").astype("string")
    error_class = error_class.fillna(
        lowered.str[0].map(_ERROR_CLASS, na_action="ignore").astype("string")
    )

    params = _params(raw, [f for f in fields if f.startswith("param.")], n)
    identity = [f for f in _IDENTITY if f in mapping] if "run_id" in mapping else fields
    keys = _source_keys(raw, identity)
    run_id = text("run_id").fillna("csv-" + keys.str.slice(0, 12))
    step = text("step").fillna("job")

    frame = pd.DataFrame(
        {
            "source_key": keys,
            "run_id": run_id.astype("string"),
            "step": step.astype("string"),
            "account": text("account").astype("string"),
            "quantity": quantity,
            "params": pd.Series(params, dtype=object),
            "started_at": started,
            "finished_at": finished,
            "duration_s": duration.astype("float64"),
            "status": status,
            "exit_code": exit_code.round().astype("Int64"),
            "error_class": error_class.astype("string"),
            "peak_rss_mb": pd.Series(np.nan, index=range(n), dtype="float64"),
            "cpu_s": pd.Series(np.nan, index=range(n), dtype="float64"),
            "line": line_no,
        }
    )
    running = (status == "running").to_numpy(dtype=bool, na_value=False)
    invalid |= started.isna().to_numpy() & ~running
    unfinished = ~invalid & running
    keep = ~invalid & ~unfinished
    malformed = sorted([*bad, *line_no[invalid].tolist()])
    return ParsedImport(
        frame=frame[keep].reset_index(drop=True),
        read=read,
        malformed_lines=malformed,
        unfinished=int(unfinished.sum()),
    )


def _params(raw: pd.DataFrame, names: list[str], n: int) -> list[dict[str, Any]]:
    """Per row, ``{NAME: value}`` of the ``param.NAME`` columns; numbers when a whole
    column is numeric, else text; empty cells left out."""
    import pandas as pd

    if not names:
        return [{} for _ in range(n)]
    columns: list[list[Any]] = []
    for name in names:
        values = raw[name].mask(raw[name] == "")
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        if values.notna().any() and (numbers.notna() == values.notna()).all():
            as_int = numbers == numbers.round()
            column: list[Any] = [
                None if math.isnan(v) else (int(v) if i else float(v))
                for v, i in zip(numbers.tolist(), as_int.tolist(), strict=True)
            ]
        else:
            column = [None if v is pd.NA else str(v) for v in values.tolist()]
        columns.append(column)
    short = [name[len("param.") :] for name in names]
    return [
        {k: v for k, v in zip(short, row, strict=True) if v is not None}
        for row in zip(*columns, strict=True)
    ]


def _source_keys(raw: pd.DataFrame, fields: list[str]) -> pd.Series:
    """sha1 of the row's mapped fields and its occurrence among identical rows."""
    import pandas as pd

    columns = [
        [f"{name}={value}\x1f" for value in raw[name].fillna("").tolist()] for name in fields
    ]
    seen: dict[str, int] = {}
    material: list[str] = []
    for parts in zip(*columns, strict=True):
        joined = "".join(parts)
        count = seen.get(joined, 0)
        seen[joined] = count + 1
        material.append(f"{joined}#{count}")
    return pd.Series(
        [hashlib.sha1(m.encode("utf-8")).hexdigest() for m in material], dtype="string"
    )
