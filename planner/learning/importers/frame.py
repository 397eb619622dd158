"""From the text of a table's cells to normalised attempt rows: what ``import csv`` and
``import sacct`` share once each has picked which cell feeds which field.

Rules (both importers): a start time is required, directly or as finish - duration; the
duration comes from the duration field, else finish - start; the finish from start +
duration. Durations are seconds or Slurm's forms (:func:`~.values.duration_seconds`).
Rows of jobs still running or pending are skipped and counted as unfinished. A row is
malformed when a time, number, duration or exit code does not parse, when its duration is
negative or its end before its start, or when it has no start time; the first reason of
each is kept for the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from planner.learning.importers.common import MALFORMED_SHOWN, ParsedImport
from planner.learning.importers.values import (
    ABSENT,
    Problems,
    duration_seconds,
    error_classes,
    exit_codes,
    parse_times,
    statuses,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["Check", "TableText", "build_frame"]

#: A caller's own check: rows where the mask is true are malformed, ``what`` says why
#: (``{value}`` = the row's text in the series).
Check = tuple[Any, str, "pd.Series | None"]


@dataclass
class TableText:
    """The cells of a table, as text, by the field they feed.

    ``fields``: one ``string`` column per field (``step``, ``account``, ``quantity``,
    ``run_id``, ``started_at``, ``finished_at``, ``duration_s``, ``status``,
    ``exit_code``), stripped, ``<NA>`` when empty; fields not in it are unknown.
    ``columns``: the file's name of each field's column, for messages. ``lines``: the
    file line of each row. ``rejected``: ``(line, why)`` of rows refused before this
    (a wrong number of fields). ``read``: the records read, valid or not."""

    fields: pd.DataFrame
    columns: Mapping[str, str]
    lines: np.ndarray
    read: int
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines)

    def text(self, name: str) -> pd.Series:
        """The field's text, ``<NA>`` for empty cells or when the field is unknown."""
        import pandas as pd

        if name in self.fields:
            column: pd.Series = self.fields[name]
            return column
        return pd.Series(pd.NA, index=range(len(self)), dtype="string")


def _present(values: pd.Series) -> pd.Series:
    """``values`` with the exports' "no value" words (``Unknown``, ``None``...) as NA."""
    return values.mask(values.str.lower().isin(ABSENT))


def build_frame(
    table: TableText,
    *,
    keys: pd.Series,
    params: Sequence[dict[str, Any]],
    time_format: str | None,
    zone: str,
    checks: Sequence[Check] = (),
    extra: Mapping[str, pd.Series] | None = None,
    run_prefix: str = "csv-",
    folded: int = 0,
) -> ParsedImport:
    """Normalised attempt rows of ``table`` (see the module docstring).

    ``keys``: each row's ``source_key``; ``params``: each row's params; ``checks``: the
    caller's own reasons to refuse rows; ``extra``: values of other columns of
    :data:`~.common.COLUMNS` (``peak_rss_mb``, ``cpu_s``); a row without a run id gets
    ``run_prefix`` + the first 12 characters of its key."""
    import numpy as np
    import pandas as pd

    n = len(table)
    problems = Problems(n)
    label = table.columns.get

    def time(name: str) -> pd.Series:
        raw = _present(table.text(name))
        out = parse_times(raw.fillna(""), time_format, zone)
        kind = {None: "a time", "epoch": "a Unix time"}.get(time_format)
        what = kind or f"a time in the format {time_format!r}"
        problems.add(raw.notna() & out.isna(), f"{label(name)} {{value}} is not {what}", raw)
        return out

    started = time("started_at")
    finished = time("finished_at")
    duration_text = table.text("duration_s")
    duration, bad_duration = duration_seconds(duration_text)
    problems.add(bad_duration, f"{label('duration_s')} {{value}} is not a duration", duration_text)
    quantity_text = _present(table.text("quantity"))
    quantity = pd.to_numeric(quantity_text, errors="coerce").astype("float64")
    problems.add(
        quantity_text.notna() & quantity.isna(),
        f"{label('quantity')} {{value}} is not a number",
        quantity_text,
    )
    exit_text = table.text("exit_code")
    exit_code, bad_exit = exit_codes(exit_text)
    problems.add(bad_exit, f"{label('exit_code')} {{value}} is not an exit code", exit_text)
    for mask, what, texts in checks:
        problems.add(mask, what, texts)

    problems.add(
        (duration < 0).to_numpy(),
        f"{label('duration_s')} {{value}} is a negative duration",
        duration_text,
    )
    backwards = (finished < started).to_numpy(
        dtype=bool, na_value=False
    ) & duration.isna().to_numpy()
    if backwards.any():
        start_text, end_text = table.text("started_at"), table.text("finished_at")
        rows = np.flatnonzero(backwards)
        said = pd.Series(
            [
                f"{label('finished_at')} {end_text.iat[r]!r} is before "
                f"{label('started_at')} {start_text.iat[r]!r}"
                for r in rows[:MALFORMED_SHOWN].tolist()
            ],
            index=rows[:MALFORMED_SHOWN],
            dtype=object,
        )
        problems.add(backwards, "{value}", said, quote=False)
    duration = duration.fillna((finished - started).dt.total_seconds())
    started = started.fillna(finished - pd.to_timedelta(duration, unit="s"))
    finished = finished.fillna(started + pd.to_timedelta(duration, unit="s"))

    status_text = table.text("status")
    status = statuses(status_text, exit_code)
    running = (status == "running").to_numpy(dtype=bool, na_value=False)
    no_start = started.isna().to_numpy() & ~running
    if no_start.any():
        rows = np.flatnonzero(no_start)
        problems.add(no_start, "{value}", _no_start(table, rows[:MALFORMED_SHOWN]), quote=False)

    run_id = table.text("run_id").fillna(run_prefix + keys.str.slice(0, 12))
    nothing = pd.Series(np.nan, index=range(n), dtype="float64")
    extra = extra or {}
    frame = pd.DataFrame(
        {
            "source_key": keys.astype("string"),
            "run_id": run_id.astype("string"),
            "step": table.text("step").fillna("job").astype("string"),
            "account": table.text("account").astype("string"),
            "quantity": quantity,
            "params": pd.Series(list(params), index=range(n), dtype=object),
            "started_at": started,
            "finished_at": finished,
            "duration_s": duration.astype("float64"),
            "status": status,
            "exit_code": exit_code,
            "error_class": error_classes(status_text),
            "peak_rss_mb": extra.get("peak_rss_mb", nothing).astype("float64"),
            "cpu_s": extra.get("cpu_s", nothing).astype("float64"),
            "line": table.lines,
        }
    )
    unfinished = ~problems.invalid & running
    keep = ~problems.invalid & ~unfinished
    malformed, reasons = problems.report(table.lines, table.rejected, shown=MALFORMED_SHOWN)
    return ParsedImport(
        frame=frame[keep].reset_index(drop=True),
        read=table.read,
        malformed_lines=malformed,
        unfinished=int(unfinished.sum()),
        malformed_reasons=reasons,
        folded=folded,
    )


def _no_start(table: TableText, rows: np.ndarray) -> pd.Series:
    """``no start time (Start 'None', End 'Unknown')`` for the given rows."""
    import pandas as pd

    fields = [f for f in ("started_at", "finished_at", "duration_s") if f in table.columns]
    texts = {f: table.text(f) for f in fields}
    said = []
    for row in rows.tolist():
        shown = []
        for name in fields:
            value = texts[name].iat[row]
            shown.append(f"{table.columns[name]} {'' if value is pd.NA else value!r}")
        said.append(f"no start time ({', '.join(shown)})" if shown else "no start time")
    return pd.Series(said, index=rows, dtype=object)
