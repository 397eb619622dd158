"""Import run history from another system: the use case behind ``planner import`` (and the
analysts' :func:`planner.analysis.traces.import_trace`).

:func:`import_history` parses the whole file first (a bad mapping or a missing column
stops before the database is touched), then writes every valid row in one transaction;
importing a file again adds nothing. Malformed lines are skipped and counted; when no line
is valid it raises :class:`~planner.errors.InputFileError` saying what is wrong.

Kinds: ``swf`` (a Standard Workload Format log), ``csv`` (any table of runs, with a
``mapping`` of fields to columns) and ``sacct`` (Slurm's ``sacct --parsable2`` output).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from planner.errors import InputFileError, UsageError

if TYPE_CHECKING:
    from planner.learning.importers.common import ImportSummary, ParsedImport

__all__ = ["IMPORT_KINDS", "import_history", "parse_history"]

#: The kinds of files :func:`import_history` reads.
IMPORT_KINDS = ("swf", "csv", "sacct")


def parse_history(
    path: Path,
    kind: str,
    *,
    mapping: str | Mapping[str, str] | None = None,
    time_format: str | None = None,
    timezone: str | None = None,
) -> tuple[ParsedImport, str]:
    """(the parsed file, the source its rows are stored under): ``swf:<file name>``,
    ``csv:<file name>``, or ``sacct`` (one source for every export: a job is stored once).

    ``mapping`` (csv only, required there): ``"step=job,duration_s=dur"`` or the same as a
    mapping; ``time_format`` (csv) and ``timezone`` (csv, sacct) as ``planner import``'s
    options. Raises :class:`UsageError` for an unknown kind, a missing or bad mapping."""
    path = Path(path)
    if kind == "swf":
        from planner.learning.importers.swf import parse_swf

        return parse_swf(path), f"swf:{path.name}"
    if kind == "csv":
        from planner.learning.importers.table import parse_csv, parse_mapping

        if mapping is None:
            raise UsageError("mapping", "a CSV import needs a mapping of fields to columns")
        fields = parse_mapping(mapping) if isinstance(mapping, str) else dict(mapping)
        parsed = parse_csv(path, fields, time_format=time_format, timezone=timezone)
        return parsed, f"csv:{path.name}"
    if kind == "sacct":
        from planner.learning.importers.sacct import SACCT_SOURCE, parse_sacct

        return parse_sacct(path, timezone=timezone), SACCT_SOURCE
    raise UsageError("kind", f"must be one of {', '.join(IMPORT_KINDS)}, got {kind!r}")


def import_history(
    url: str,
    path: Path,
    kind: str,
    *,
    pipeline: str | None = None,
    mapping: str | Mapping[str, str] | None = None,
    time_format: str | None = None,
    timezone: str | None = None,
) -> ImportSummary:
    """Parse ``path`` (:func:`parse_history`) and import its valid rows into the history at
    ``url`` (created when absent) under ``pipeline`` (default: the file name without its
    extensions, e.g. ``KTH-SP2-1996-2.1-cln``); returns what was read, imported, already
    there and skipped."""
    from planner.history import HistoryStore
    from planner.learning.importers.common import (
        default_pipeline_name,
        import_parsed,
        nothing_valid,
    )

    path = Path(path)
    parsed, source = parse_history(
        path, kind, mapping=mapping, time_format=time_format, timezone=timezone
    )
    if parsed.frame.empty:
        raise InputFileError(str(path), nothing_valid(parsed))
    name = pipeline or default_pipeline_name(path)
    store = HistoryStore(url)
    try:
        return import_parsed(store, parsed, pipeline=name, source=source, file=str(path))
    finally:
        store.close()
