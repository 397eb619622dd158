"""What the importers share: the parsed table, file opening, the summary.

A parser turns a file into a :class:`ParsedImport`: one normalised row per valid record
(the columns of :data:`COLUMNS`), how many records were read, the line numbers of the
malformed ones and, for the first of them, what is wrong (``line 5: Elapsed 'soon' is not
a duration``). :func:`import_parsed` hands the rows to the history store in one
transaction (``HistoryStore.import_attempts``), which skips rows whose
``(pipeline, source, source_key)`` is already stored, so importing a file twice adds nothing.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from planner.errors import InputFileError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "MALFORMED_SHOWN",
    "ImportSummary",
    "ParsedImport",
    "default_pipeline_name",
    "import_parsed",
    "nothing_valid",
    "open_text",
    "read_lines",
    "to_rows",
]

#: Columns of ``ParsedImport.frame`` (besides ``line``, the record's line in the file).
COLUMNS = (
    "source_key",
    "run_id",
    "step",
    "account",
    "quantity",
    "params",
    "started_at",
    "finished_at",
    "duration_s",
    "status",
    "exit_code",
    "error_class",
    "peak_rss_mb",
    "cpu_s",
)

#: How many malformed line numbers a summary lists.
MALFORMED_SHOWN = 10

_KNOWN_SUFFIXES = {".gz", ".swf", ".csv", ".tsv", ".txt", ".log"}


@dataclass
class ParsedImport:
    """A file parsed into normalised attempt rows.

    ``frame`` has the columns of :data:`COLUMNS` plus ``line``; times are
    ``datetime64[us, UTC]``; ``read`` counts the data records seen (valid or not);
    ``malformed_lines`` lists the 1-based line numbers of the records that were skipped;
    ``unfinished`` counts the valid records of jobs not finished yet (skipped too);
    ``malformed_reasons`` says what is wrong with the first malformed lines
    (``line 5: Elapsed 'soon' is not a duration``, at most :data:`MALFORMED_SHOWN`);
    ``folded`` counts lines merged into another record (sacct's job steps).
    """

    frame: pd.DataFrame
    read: int
    malformed_lines: list[int] = field(default_factory=list)
    unfinished: int = 0
    malformed_reasons: list[str] = field(default_factory=list)
    folded: int = 0


@dataclass(frozen=True)
class ImportSummary:
    """What an import did, for the CLI and for tests."""

    pipeline: str
    file: str
    read: int
    imported: int
    duplicates: int
    malformed: int
    malformed_lines: list[int]
    span: tuple[str, str] | None
    steps: int
    accounts: int
    unfinished: int = 0
    malformed_reasons: list[str] = field(default_factory=list)
    folded: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "file": self.file,
            "read": self.read,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "malformed": self.malformed,
            "malformed_lines": self.malformed_lines[:MALFORMED_SHOWN],
            "malformed_reasons": self.malformed_reasons[:MALFORMED_SHOWN],
            "unfinished": self.unfinished,
            "span": list(self.span) if self.span else None,
            "steps": self.steps,
            "accounts": self.accounts,
        }


def default_pipeline_name(path: Path) -> str:
    """The file's name without its data extensions: ``KTH-SP2-1996-2.1-cln.swf.gz`` ->
    ``KTH-SP2-1996-2.1-cln``, ``runs.csv`` -> ``runs``."""
    name = path.name
    while True:
        stem, dot, suffix = name.rpartition(".")
        if dot and stem and f".{suffix.lower()}" in _KNOWN_SUFFIXES:
            name = stem
        else:
            return name


def open_text(path: Path) -> TextIO:
    """``path`` opened for reading text (gzip when it ends in ``.gz`` or starts like gzip)."""
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        if magic == b"\x1f\x8b":
            return io.TextIOWrapper(
                gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline=""
            )
        return path.open("r", encoding="utf-8", errors="replace", newline="")
    except FileNotFoundError:
        raise InputFileError(str(path), "no such file") from None
    except IsADirectoryError:
        raise InputFileError(str(path), "is a directory, not a file") from None
    except OSError as exc:
        raise InputFileError(str(path), f"cannot read: {exc.strerror or exc}") from None


def read_lines(path: Path) -> list[str]:
    """All lines of a (possibly gzipped) text file, without line ends."""
    try:
        with open_text(path) as handle:
            return handle.read().splitlines()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(str(path), f"cannot read: {exc}") from None


def _plain(column: pd.Series) -> list[Any]:
    """A column as plain Python values, missing ones (NaN, NaT, NA) as ``None``."""
    if column.dtype == object:  # params: dicts
        return column.tolist()
    return column.astype(object).where(column.notna(), None).tolist()


def to_rows(parsed: ParsedImport, pipeline: str) -> Iterator[dict[str, Any]]:
    """The parsed rows as the dicts ``HistoryStore.import_attempts`` takes."""
    frame = parsed.frame
    columns = [_plain(frame[name]) for name in COLUMNS]
    for values in zip(*columns, strict=True):
        row = dict(zip(COLUMNS, values, strict=True))
        row["pipeline"] = pipeline
        row["attempt"] = 1
        if row["params"] is None:
            row["params"] = {}
        yield row


def _span(frame: pd.DataFrame) -> tuple[str, str] | None:
    if frame.empty:
        return None
    start = frame["started_at"].min()
    import pandas as pd

    last_start = frame["started_at"].max()
    last_end = frame["finished_at"].max()
    end = last_start if pd.isna(last_end) else max(last_end, last_start)
    return (start.isoformat(), end.isoformat())


def import_parsed(
    store: Any, parsed: ParsedImport, *, pipeline: str, source: str, file: str
) -> ImportSummary:
    """Write the parsed rows into ``store`` (one transaction) and summarise."""
    result = store.import_attempts(to_rows(parsed, pipeline), source)
    imported, duplicates = int(result.inserted), int(result.duplicates)
    frame = parsed.frame
    return ImportSummary(
        pipeline=pipeline,
        file=file,
        read=parsed.read,
        imported=imported,
        duplicates=duplicates,
        malformed=len(parsed.malformed_lines),
        malformed_lines=sorted(parsed.malformed_lines)[:MALFORMED_SHOWN],
        span=_span(frame),
        steps=int(frame["step"].nunique()) if not frame.empty else 0,
        accounts=int(frame["account"].nunique()) if not frame.empty else 0,
        unfinished=parsed.unfinished,
        malformed_reasons=parsed.malformed_reasons[:MALFORMED_SHOWN],
        folded=parsed.folded,
    )


def nothing_valid(parsed: ParsedImport, *, reasons: int = 3) -> str:
    """Why a parsed file gives nothing to import, in one line: how many lines are
    malformed, the first line numbers, and what is wrong with the first ``reasons``."""
    if parsed.unfinished and not parsed.malformed_lines:
        return f"nothing to import: all {parsed.unfinished} jobs are unfinished"
    lines = parsed.malformed_lines
    if not lines:
        return "no valid record to import (no data line)"
    numbers = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
    detail = f"{len(lines)} malformed, lines {numbers}"
    if parsed.unfinished:
        detail += f"; {parsed.unfinished} unfinished"
    why = "; ".join(parsed.malformed_reasons[:reasons])
    return f"no valid record to import ({detail}){': ' + why if why else ''}"
