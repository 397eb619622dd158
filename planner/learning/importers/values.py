"""Values the table importers read, and what they say about the ones they cannot read.

Durations: plain seconds (``90``, ``90.5``) or Slurm's forms, ``MM:SS``, ``HH:MM:SS``,
``D-HH:MM:SS``, ``D-HH``, ``D-HH:MM``, the last part with an optional fraction
(``00:00:01.234``, sacct's CPU times); the leading part may be any size (``27:00:00``).
Slurm's ``UNLIMITED``, ``Partition_Limit`` and ``INVALID`` (a limit that is not a number,
a negative time) mean "no value", as do the exports' ``Unknown``, ``None``, ``N/A``...

Exit codes: ``N`` or Slurm's ``N:S`` (exit status N, signal S). A signal gives the shell's
convention, ``128 + S``, as the runner records it; else N.

Statuses: see :func:`map_status`.

:class:`Problems` remembers, per check, which rows failed it and the raw text at fault, so
an import can say ``line 5: Elapsed '1-xx' is not a duration`` for its first malformed lines
without formatting a message for every bad row of a large file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from planner.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "ABSENT",
    "LIMIT_WORDS",
    "Problems",
    "duration_seconds",
    "error_classes",
    "exit_codes",
    "map_status",
    "parse_times",
    "slurm_duration",
    "statuses",
    "zone_name",
]

#: How exports write "no value" (sacct: ``Unknown``, ``None``); compared lower-cased.
ABSENT = frozenset({"unknown", "none", "n/a", "na", "nan", "nat", "null", "-"})
#: Slurm's words for a limit or time that is not a number; compared lower-cased.
LIMIT_WORDS = frozenset({"unlimited", "partition_limit", "invalid"})

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
    "special_exit": "failed",
    "deadline": "timed_out",
    "timeout": "timed_out",
    "timed_out": "timed_out",
    "timedout": "timed_out",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "aborted": "cancelled",
    "revoked": "cancelled",
    "preempted": "interrupted",
    "requeued": "interrupted",
    "interrupted": "interrupted",
    "skipped": "skipped",
    "running": "running",
    "pending": "running",
    "suspended": "running",
    "stopped": "running",
    "configuring": "running",
    "completing": "running",
    "resizing": "running",
    "signaling": "running",
    "stage_out": "running",
    "requeue_hold": "running",
    "requeue_fed": "running",
    "resv_del_hold": "running",
}
_ERROR_CLASS = {
    "out_of_memory": "out_of_memory",
    "oom": "out_of_memory",
    "node_fail": "node_fail",
    "boot_fail": "boot_fail",
}
_DAYS = re.compile(r"^(\d+)-(\d+)(?::(\d+)(?::(\d+(?:\.\d+)?))?)?$")  # D-HH[:MM[:SS[.f]]]
_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")  # [HH:]MM:SS[.f]
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_EXIT = re.compile(r"^([+-]?\d+)(?::(\d+))?$")


def slurm_duration(text: str) -> float | None:
    """Seconds in one of Slurm's duration forms (see the module docstring), ``None`` when
    ``text`` is not one. Plain numbers are not Slurm durations here."""
    text = text.strip()
    match = _DAYS.match(text)
    if match:
        days, hours, minutes, seconds = match.groups()
        if int(hours) >= 24 or int(minutes or 0) >= 60 or float(seconds or 0) >= 60:
            return None
        return (
            int(days) * 86400.0
            + int(hours) * 3600.0
            + int(minutes or 0) * 60.0
            + float(seconds or 0)
        )
    match = _CLOCK.match(text)
    if match:
        hours, minutes, seconds = match.groups()
        if float(seconds) >= 60 or (hours is not None and int(minutes) >= 60):
            return None
        return int(hours or 0) * 3600.0 + int(minutes) * 60.0 + float(seconds)
    return None


def _duration_or_nan(text: str, numbers: bool) -> float | None:
    """Seconds; NaN for a limit word; None when ``text`` is no duration."""
    if text.lower() in LIMIT_WORDS:
        return math.nan
    if numbers and _NUMBER.match(text):
        value = float(text)
        return value if math.isfinite(value) else None
    return slurm_duration(text)


def duration_seconds(values: pd.Series, *, numbers: bool = True) -> tuple[pd.Series, np.ndarray]:
    """Durations as float seconds, and where a present value is not a duration.

    ``values`` is text with ``<NA>`` for empty cells; plain numbers are seconds when
    ``numbers``; limit words and the absent words are missing, not malformed."""
    import numpy as np
    import pandas as pd

    present = (values.notna() & ~values.str.lower().isin(ABSENT)).to_numpy(dtype=bool)
    out = pd.Series(np.nan, index=values.index, dtype="float64")
    if numbers:  # the fast path: plain seconds
        out = pd.to_numeric(values.where(present), errors="coerce").astype("float64")
    rest = present & out.isna().to_numpy()
    bad = np.zeros(len(values), dtype=bool)
    if rest.any():
        texts = values[rest]
        table = {text: _duration_or_nan(text, numbers) for text in texts.unique().tolist()}
        parsed = texts.map(table)
        limits = texts.str.lower().isin(LIMIT_WORDS).to_numpy(dtype=bool)
        bad[np.flatnonzero(rest)] = parsed.isna().to_numpy() & ~limits
        out[rest] = parsed.astype("float64").to_numpy()
    infinite = np.isinf(out.to_numpy())
    bad |= infinite
    out[infinite] = np.nan
    return out, bad


def exit_codes(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Exit codes (``N`` or ``N:S``, see the module docstring) as ``Int64``, and where a
    present value is not one."""
    import numpy as np
    import pandas as pd

    present = values.notna() & ~values.str.lower().isin(ABSENT)
    table: dict[str, Any] = {}
    for text in values[present].unique().tolist():
        match = _EXIT.match(text)
        if match is None:
            table[text] = None
        else:
            code, signal = int(match.group(1)), int(match.group(2) or 0)
            table[text] = 128 + signal if signal else code
    out = pd.Series(pd.NA, index=values.index, dtype="Int64")
    parsed = values[present].map(table)
    bad = np.zeros(len(values), dtype=bool)
    if len(parsed):
        bad[np.flatnonzero(present.to_numpy())] = parsed.isna().to_numpy()
        out[present] = parsed.astype("Int64")
    return out, bad


def map_status(raw: str) -> str:
    """One status word (ours, Slurm's or a CI system's) as one of our statuses.

    Slurm: ``COMPLETED`` succeeded; ``FAILED``, ``OUT_OF_MEMORY``, ``NODE_FAIL``,
    ``BOOT_FAIL``, ``SPECIAL_EXIT`` failed; ``TIMEOUT``, ``DEADLINE`` timed_out;
    ``CANCELLED``, ``CANCELLED by 123``, ``REVOKED`` cancelled; ``PREEMPTED`` and
    ``REQUEUED`` (a run of a job that was put back in the queue: it ended, the job goes on)
    interrupted; ``RUNNING``, ``PENDING``, ``SUSPENDED``, ``COMPLETING``... running (not
    finished: importers skip them). Unknown words are ``unknown``."""
    word = raw.strip().lower().replace(" ", "_").replace("-", "_")
    if not word:
        return "unknown"
    if word in _STATUS_WORDS:
        return _STATUS_WORDS[word]
    first = re.split(r"[_+(]", word, maxsplit=1)[0]  # "cancelled_by_123", "cancelled+"
    return _STATUS_WORDS.get(first, "unknown")


def statuses(status_text: pd.Series, exit_code: pd.Series) -> pd.Series:
    """Our statuses from status words; without one the exit code decides (0 succeeded,
    else failed); else ``unknown``."""
    words = status_text.dropna().unique()
    status = status_text.map({w: map_status(w) for w in words}, na_action="ignore")
    from_exit = exit_code.map(lambda c: "succeeded" if c == 0 else "failed", na_action="ignore")
    return status.astype("string").fillna(from_exit.astype("string")).fillna("unknown")


def error_classes(status_text: pd.Series) -> pd.Series:
    """The error class a status word implies (``out_of_memory``, ``node_fail``,
    ``boot_fail``), else ``<NA>``."""
    lowered = status_text.str.lower().str.replace(" ", "_")
    direct = lowered.map(_ERROR_CLASS, na_action="ignore").astype("string")
    first = lowered.str.split(r"[_+(]", n=1, regex=True).str[0]
    return direct.fillna(first.map(_ERROR_CLASS, na_action="ignore").astype("string"))


def zone_name(name: str | None) -> str:
    """The ``--timezone`` option checked: an IANA zone name, ``UTC`` when not given."""
    if not name or name.upper() == "UTC":
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError("--timezone", f"unknown time zone {name!r}") from None
    return name


def parse_times(raw: pd.Series, time_format: str | None, zone: str) -> pd.Series:
    """Text times as ``datetime64[us, UTC]``; what does not parse is NaT.

    ISO 8601 unless ``time_format`` (a ``strptime`` format, or ``epoch`` for Unix
    seconds); a time without a zone is in ``zone``; a local time that a DST change skips
    or repeats is NaT."""
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


@dataclass(frozen=True)
class _Check:
    mask: np.ndarray
    what: str
    texts: pd.Series | None
    quote: bool


class Problems:
    """Which rows of a table are malformed, and why (the first reason of each row).

    Checks are added in the order they should be reported; only the reasons asked for
    are formatted, so a file with a million bad rows costs no million messages."""

    def __init__(self, n: int) -> None:
        import numpy as np

        self.invalid: np.ndarray = np.zeros(n, dtype=bool)
        self._checks: list[_Check] = []

    def add(
        self, mask: Any, what: str, texts: pd.Series | None = None, *, quote: bool = True
    ) -> None:
        """Rows where ``mask`` is true are malformed; ``what`` says why, ``{value}`` in it
        standing for the row's text in ``texts`` (a series indexed by row position; quoted
        unless ``quote`` is false)."""
        import numpy as np

        flags = np.asarray(mask, dtype=bool)
        if not flags.any():
            return
        self.invalid |= flags
        self._checks.append(_Check(flags, what, texts, quote))

    def reason(self, row: int) -> str:
        """Why the row at position ``row`` is malformed."""
        import pandas as pd

        for check in self._checks:
            if not check.mask[row]:
                continue
            if check.texts is None:
                return check.what
            value = check.texts.get(row)
            shown = "" if value is None or value is pd.NA else str(value)
            return check.what.replace("{value}", repr(shown) if check.quote else shown)
        return "malformed"

    def report(
        self, lines: np.ndarray, rejected: Sequence[tuple[int, str]] = (), *, shown: int = 10
    ) -> tuple[list[int], list[str]]:
        """Every malformed line number (sorted: ``rejected`` ones, found before the values
        were read, and the rows at ``lines`` found invalid here), and ``line N: why`` for
        the first ``shown`` of them."""
        import numpy as np

        positions = np.flatnonzero(self.invalid)
        found = {int(lines[p]): int(p) for p in positions.tolist()}
        given = dict(rejected)
        numbers = sorted([*given, *found])
        reasons = [
            f"line {line}: {given[line] if line in given else self.reason(found[line])}"
            for line in numbers[:shown]
        ]
        return numbers, reasons
