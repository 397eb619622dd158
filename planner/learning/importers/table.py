"""Import any table of runs from a CSV file (plain or ``.gz``): Slurm ``sacct`` exports,
CI job durations, cron logs. (``planner import sacct`` reads sacct's own columns without
a mapping: :mod:`.sacct`.)

``--map field=column,...`` says which column feeds which field:

``step``, ``account``, ``quantity``, ``run_id``, ``started_at``, ``finished_at``,
``duration_s``, ``status``, ``exit_code``, and ``param.NAME`` for any other feature.
Unmapped fields are empty. The separator is a comma, or the semicolon, tab or bar when
the header line has more of those. A start time is required, directly (``started_at``)
or from ``finished_at`` and ``duration_s``. The duration comes from ``duration_s``, else
from finished - started; the finish time from started + duration.

Durations (``duration_s``): seconds (``90``, ``90.5``) or Slurm's ``[D-]HH:MM:SS`` forms
(``MM:SS``, ``HH:MM:SS``, ``D-HH:MM:SS``, ``D-HH``, ``D-HH:MM``, fractional seconds as in
``00:00:01.234``), so sacct's ``Elapsed`` maps as it is.

Times: ISO 8601 by default (or ``--time-format``, a ``strptime`` format, or ``epoch`` for
Unix seconds); a time without a zone is in ``--timezone`` (default UTC); a time with an
offset is converted to UTC; a local time that a DST change skips or repeats is malformed.

Status: our own words, Slurm states (``COMPLETED``, ``FAILED``, ``TIMEOUT``,
``CANCELLED by ...``, ``OUT_OF_MEMORY``, ``NODE_FAIL``, ``PREEMPTED``, ``REQUEUED``...;
see :func:`~.values.map_status`) and CI words (passed, success, error, ...) are mapped;
without a status column the exit code decides (0 succeeded, else failed); otherwise
``unknown``. A Slurm ``ExitCode`` ``N:S`` is exit status N, or 128 + S when signal S
ended the job (as the runner records a killed task). ``step`` defaults to ``job``.

Params (``param.NAME``): numbers when every value of the column is a number, seconds when
every value is a Slurm duration (``Timelimit``), Slurm's ``UNLIMITED``,
``Partition_Limit`` and ``INVALID`` leaving the param out in either case; else text.

Identity: a row is the same as a stored one when the ``source_key`` matches, for the same
pipeline and source (``csv:<file name>``). With a ``run_id`` column the key is the sha1 of
the raw text of the row's run_id, step, account, started_at and finished_at (those
mapped), so adding a ``param.`` column later does not duplicate rows; without one it is
the sha1 of every mapped field. Either way the row's occurrence number among rows with
the same key in the file is part of it: identical rows within one file are kept apart,
and re-importing the file adds nothing. Without a ``run_id`` column each row is its own
run, ``csv-<first 12 hex digits of the key>``. Rows of jobs still running or pending
(Slurm ``RUNNING``, ``PENDING``, ``SUSPENDED``...) are not history yet: they are skipped
and counted as ``unfinished``, to be imported by a later export.

In time, number and duration columns, ``Unknown``, ``None``, ``N/A``, ``NA``, ``null`` and
``-`` mean no value.

Malformed rows (a wrong number of fields, a time, number, duration or exit code that does
not parse, a negative duration, an end before the start, no start time) are skipped and
counted with their line numbers (the header is line 1); the report says what is wrong
with the first ones, naming the column and the value (``line 4: secs 'soon' is not a
duration``).
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.errors import InputFileError, UsageError
from planner.gcpause import paused_gc
from planner.learning.importers.common import ParsedImport, open_text
from planner.learning.importers.frame import TableText, build_frame
from planner.learning.importers.values import (
    ABSENT,
    LIMIT_WORDS,
    map_status,
    slurm_duration,
    zone_name,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CSV_FIELDS", "map_status", "parse_csv", "parse_mapping", "source_keys"]

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

#: With a run_id column, these fields (their raw text) identify a row.
_IDENTITY = ("run_id", "step", "account", "started_at", "finished_at")
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


def _read_table(
    path: Path,
) -> tuple[list[str], list[list[str]], list[int], list[tuple[int, str]], int]:
    """Header, good rows, their line numbers, rejected rows (line, why), rows read."""
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
            rejected: list[tuple[int, str]] = []
            read = 0
            line = reader.line_num
            for row in reader:
                start, line = line + 1, reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                read += 1
                if len(row) != width:
                    rejected.append((start, f"{len(row)} fields, the header has {width}"))
                    continue
                rows.append(row)
                lines.append(start)
    except csv.Error as exc:
        raise InputFileError(str(path), f"not a CSV file: {exc}") from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(str(path), f"cannot read: {exc}") from None
    return [h.strip().lstrip("\ufeff") for h in header], rows, lines, rejected, read


def _delimiter(header_line: str) -> str:
    """The header's separator: comma unless it has more semicolons, tabs or bars."""
    counts = {sep: header_line.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > counts[","] else ","


def parse_csv(
    path: Path,
    mapping: Mapping[str, str],
    *,
    time_format: str | None = None,
    timezone: str | None = None,
) -> ParsedImport:
    """Parse a CSV table of runs into normalised attempt rows (see the module docstring).

    Raises :class:`InputFileError` when a mapped column is missing from the header."""
    zone = zone_name(timezone)
    with paused_gc():  # millions of small, cycle-free lists and strings
        return _parse_csv(path, mapping, time_format, zone)


def _parse_csv(
    path: Path, mapping: Mapping[str, str], time_format: str | None, zone: str
) -> ParsedImport:
    import numpy as np
    import pandas as pd

    header, rows, lines, rejected, read = _read_table(path)
    missing = [column for column in mapping.values() if column not in header]
    if missing:
        raise InputFileError(
            str(path),
            f"no column(s) {', '.join(map(repr, missing))} (columns: {', '.join(header)})",
        )
    index = {name: i for i, name in enumerate(header)}
    fields = list(mapping)
    raw = pd.DataFrame(
        {f: pd.Series([r[index[mapping[f]]] for r in rows], dtype="string") for f in fields},
        index=range(len(rows)),
    )
    for name in fields:
        stripped = raw[name].str.strip()
        raw[name] = stripped.mask(stripped == "")
    table = TableText(
        fields=raw[[f for f in fields if f in CSV_FIELDS]],
        columns={f: c for f, c in mapping.items()},
        lines=np.asarray(lines, dtype=np.int64),
        read=read,
        rejected=rejected,
    )
    identity = [f for f in _IDENTITY if f in mapping] if "run_id" in mapping else fields
    return build_frame(
        table,
        keys=source_keys(raw, identity),
        params=_params(raw, [f for f in fields if f.startswith("param.")], len(rows)),
        time_format=time_format,
        zone=zone,
    )


def _param_values(values: pd.Series) -> list[Any]:
    """One param column's values: numbers when every present value is a number, seconds
    when every present value is a Slurm duration (limit words dropped in both cases), else
    text. ``None`` = left out."""
    import pandas as pd

    lowered = values.str.lower()
    limits = lowered.isin(LIMIT_WORDS)
    present = values.notna() & ~limits & ~lowered.isin(ABSENT)
    numbers = pd.to_numeric(values.where(present), errors="coerce").astype("float64")
    if present.any() and (numbers.notna() == present).all():
        return [None if math.isnan(v) else _number(v) for v in numbers.tolist()]
    texts = values.where(present)
    distinct = texts.dropna().unique().tolist()
    seconds = {t: s for t in distinct if (s := slurm_duration(t)) is not None}
    if distinct and len(seconds) == len(distinct):
        return [None if t is pd.NA else _number(seconds[t]) for t in texts.tolist()]
    return [None if v is pd.NA else str(v) for v in values.tolist()]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _params(raw: pd.DataFrame, names: list[str], n: int) -> list[dict[str, Any]]:
    """Per row, ``{NAME: value}`` of the ``param.NAME`` columns; empty cells left out."""
    if not names:
        return [{} for _ in range(n)]
    columns = [_param_values(raw[name]) for name in names]
    short = [name[len("param.") :] for name in names]
    return [
        {k: v for k, v in zip(short, row, strict=True) if v is not None}
        for row in zip(*columns, strict=True)
    ]


def source_keys(raw: pd.DataFrame, fields: list[str]) -> pd.Series:
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
