"""Turning records and importer dictionaries into attempt rows, and rows into records."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from planner.clock import ensure_utc
from planner.history.records import (
    STDERR_TAIL_BYTES,
    AttemptOutcome,
    AttemptRecord,
    AttemptStart,
    AttemptStatus,
    PlanRecord,
    RunRecord,
)

__all__ = [
    "IMPORT_COLUMNS",
    "IMPORT_ORDER",
    "attempt_record",
    "import_row",
    "outcome_values",
    "params_json",
    "plan_record",
    "run_record",
    "start_values",
    "stderr_tail",
]

_INT = ("attempt", "n_accounts", "concurrency", "exit_code", "cpu_count", "pid", "pgid")
_FLOAT = ("quantity", "duration_s", "peak_rss_mb", "cpu_s", "load_avg", "free_mem_mb")
_TEXT = ("run_id", "pipeline", "step", "account", "host", "status", "error_class", "reason")
_TIME = ("started_at", "finished_at")

#: The keys an importer's row may carry (``source_key`` is required, ``source`` is given).
IMPORT_COLUMNS = frozenset((*_INT, *_FLOAT, *_TEXT, *_TIME, "params", "stderr_tail", "source_key"))

_STATUSES = frozenset(s.value for s in AttemptStatus)
_PARAMS_CACHE: dict[tuple[tuple[tuple[str, Any], ...], tuple[type, ...]], str] = {}


def params_json(params: Mapping[str, Any] | None) -> str:
    """Parameters as JSON text (keys sorted, so equal parameters give equal text)."""
    if not params:
        return "{}"
    try:
        # the value types belong to the key: True == 1 == 1.0 hash alike, but their JSON
        # differs (true, 1, 1.0)
        key = (tuple(params.items()), tuple(map(type, params.values())))
        cached = _PARAMS_CACHE.get(key)
    except TypeError:  # unhashable values
        return json.dumps(dict(params), sort_keys=True, default=str)
    if cached is None:
        cached = json.dumps(dict(params), sort_keys=True, default=str)
        if len(_PARAMS_CACHE) > 10_000:
            _PARAMS_CACHE.clear()
        _PARAMS_CACHE[key] = cached
    return cached


def stderr_tail(text: str | None) -> str | None:
    """The last :data:`STDERR_TAIL_BYTES` bytes of ``text`` (whole characters only)."""
    if text is None:
        return None
    data = text.encode("utf-8", errors="replace")
    if len(data) <= STDERR_TAIL_BYTES:
        return text
    return data[-STDERR_TAIL_BYTES:].decode("utf-8", errors="ignore")


def start_values(start: AttemptStart) -> dict[str, Any]:
    """The row written when an attempt starts."""
    return {
        "run_id": start.run_id,
        "pipeline": start.pipeline,
        "step": start.step,
        "account": start.account,
        "attempt": start.attempt,
        "quantity": start.quantity,
        "params": params_json(start.params),
        "n_accounts": start.n_accounts,
        "concurrency": start.concurrency,
        "host": start.host,
        "started_at": ensure_utc(start.started_at),
        "status": AttemptStatus.RUNNING.value,
        "pid": start.pid,
        "pgid": start.pgid,
        "load_avg": start.load_avg,
        "free_mem_mb": start.free_mem_mb,
        "cpu_count": start.cpu_count,
        "source": "planner",
    }


def outcome_values(outcome: AttemptOutcome) -> dict[str, Any]:
    """The columns updated when an attempt ends."""
    status = _status(outcome.status)
    return {
        "status": status,
        "finished_at": ensure_utc(outcome.finished_at),
        "duration_s": outcome.duration_s,
        "exit_code": outcome.exit_code,
        "error_class": outcome.error_class,
        "stderr_tail": stderr_tail(outcome.stderr_tail),
        "peak_rss_mb": outcome.peak_rss_mb,
        "cpu_s": outcome.cpu_s,
        "reason": outcome.reason,
    }


def _status(value: AttemptStatus | str) -> str:
    text = str(value.value if isinstance(value, AttemptStatus) else value)
    if text not in _STATUSES:
        raise ValueError(f"unknown attempt status {text!r} (one of {', '.join(sorted(_STATUSES))})")
    return text


def import_row(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A full attempt row from an importer's dictionary (``ValueError`` when malformed)."""
    if not IMPORT_COLUMNS.issuperset(raw):
        unknown = set(raw) - IMPORT_COLUMNS
        raise ValueError(f"unknown column(s) {', '.join(sorted(unknown))}")
    row: dict[str, Any] = dict.fromkeys(_ALL_COLUMNS)
    for key, value in raw.items():
        if not _missing(value):
            row[key] = _CONVERT[key](value)
    for key in ("pipeline", "step", "started_at", "source_key"):
        if row[key] is None:
            raise ValueError(f"{key} is required")
    row["source"] = source
    row["params"] = params_json(raw.get("params"))
    if row["stderr_tail"] is not None:
        row["stderr_tail"] = stderr_tail(row["stderr_tail"])
    if row["attempt"] is None:
        row["attempt"] = 1
    if row["run_id"] is None:
        row["run_id"] = f"{source}:{row['source_key']}"
    row["status"] = _status(row["status"] or AttemptStatus.UNKNOWN.value)
    started: datetime = row["started_at"]
    finished, duration = row["finished_at"], row["duration_s"]
    if duration is None and finished is not None:
        row["duration_s"] = (finished - started).total_seconds()
    elif finished is None and duration is not None:
        row["finished_at"] = started + timedelta(seconds=duration)
    return row


def _missing(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is int or kind is datetime:
        return False
    if value is None:
        return True
    if kind is float:
        return bool(math.isnan(value))
    if isinstance(value, float):  # numpy floats
        return bool(math.isnan(value))
    # pandas.NA / NaT compare oddly; they are "missing" by their own test
    return kind.__name__ in ("NAType", "NaTType")


def _time(value: Any) -> datetime | None:
    if _missing(value):
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise ValueError(f"not a datetime: {value!r}")
    return ensure_utc(value)


def _text(value: Any) -> str:
    return value if type(value) is str else str(value)


def _keep(value: Any) -> Any:
    return value


_CONVERT: dict[str, Any] = {
    **dict.fromkeys(_INT, int),
    **dict.fromkeys(_FLOAT, float),
    **dict.fromkeys(_TEXT, _text),
    **dict.fromkeys(_TIME, _time),
    "source_key": _text,
    "params": _keep,
    "stderr_tail": _text,
}
_ALL_COLUMNS = (*_CONVERT, "source")
#: The columns of a row from :func:`import_row`, in a fixed order.
IMPORT_ORDER: tuple[str, ...] = _ALL_COLUMNS


def attempt_record(row: Row[Any]) -> AttemptRecord:
    """An :class:`AttemptRecord` from a row of the attempts table."""
    data = row._asdict()
    data["params"] = json.loads(data["params"] or "{}")
    return AttemptRecord(**data)


def run_record(row: Row[Any]) -> RunRecord:
    """A :class:`RunRecord` from a row of the runs table."""
    data = row._asdict()
    data["selection"] = json.loads(data["selection"] or "{}")
    return RunRecord(**data)


def plan_record(row: Row[Any]) -> PlanRecord:
    """A :class:`PlanRecord` from a row of the plans table."""
    data = row._asdict()
    data["document"] = json.loads(data["document"])
    return PlanRecord(**data)
