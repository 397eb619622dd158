"""The attempts as a pandas DataFrame: the contract between history and learning.

Columns and dtypes are those of docs/ARCHITECTURE.md ("The attempts DataFrame"); times
are ``datetime64[us, UTC]``. pandas is imported here only, when a frame is asked for.
Rows with equal ``params`` share one dict object (it saves a copy per row): read them,
do not edit them in place.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, String, select, type_coerce

from planner.clock import ensure_utc
from planner.history.schema import attempts

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FRAME_COLUMNS", "FRAME_DTYPES", "empty_attempts_frame", "read_attempts"]

#: Column -> dtype of the attempts DataFrame, in column order.
FRAME_DTYPES: dict[str, str] = {
    "attempt_id": "int64",
    "run_id": "string",
    "pipeline": "string",
    "step": "string",
    "account": "string",
    "attempt": "int64",
    "quantity": "float64",
    "params": "object",
    "n_accounts": "Int64",
    "concurrency": "Int64",
    "host": "string",
    "started_at": "datetime64[us, UTC]",
    "finished_at": "datetime64[us, UTC]",
    "duration_s": "float64",
    "status": "string",
    "exit_code": "Int64",
    "error_class": "string",
    "peak_rss_mb": "float64",
    "cpu_s": "float64",
    "load_avg": "float64",
    "free_mem_mb": "float64",
    "cpu_count": "Int64",
    "source": "string",
}
FRAME_COLUMNS: tuple[str, ...] = tuple(FRAME_DTYPES)

_TIMES = ("started_at", "finished_at")


def read_attempts(
    conn: Connection,
    *,
    pipeline: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Attempts started in ``[since, until)`` (of ``pipeline``), ordered by start."""
    # Times are read raw (text on SQLite, aware datetimes on servers) and parsed by
    # pandas in one vectorised call instead of one Python object per value.
    selected = [
        type_coerce(attempts.c[name], String).label(name) if name in _TIMES else attempts.c[name]
        for name in FRAME_COLUMNS
    ]
    query = select(*selected).order_by(attempts.c.started_at, attempts.c.attempt_id)
    if pipeline is not None:
        query = query.where(attempts.c.pipeline == pipeline)
    if since is not None:
        query = query.where(attempts.c.started_at >= ensure_utc(since))
    if until is not None:
        query = query.where(attempts.c.started_at < ensure_utc(until))
    result = conn.execute(query)
    # Plain driver tuples: no column here has a result processor (times are coerced to
    # text above), and they are far cheaper than SQLAlchemy Row objects.
    records = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    columns: list[tuple[Any, ...]] = (
        list(zip(*records, strict=True)) if records else [()] * len(FRAME_COLUMNS)
    )
    return _typed(dict(zip(FRAME_COLUMNS, columns, strict=True)), len(records))


def empty_attempts_frame() -> pd.DataFrame:
    """A frame with the attempts columns and dtypes and no rows."""
    return _typed(dict.fromkeys(FRAME_COLUMNS, ()), 0)


def _typed(columns: dict[str, tuple[Any, ...]], n: int) -> pd.DataFrame:
    """The frame, one column at a time from the driver's values."""
    import numpy as np
    import pandas as pd

    out: dict[str, Any] = {}
    cache: dict[str, dict[str, Any]] = {}
    for name, dtype in FRAME_DTYPES.items():
        values = np.array(columns[name], dtype=object) if n else np.array([], dtype=object)
        if name in _TIMES:
            out[name] = pd.to_datetime(values, utc=True, format="ISO8601").astype(dtype)
        elif name == "params":
            params = np.empty(n, dtype=object)
            params[:] = [_params(text, cache) for text in columns[name]]
            out[name] = params
        elif dtype == "float64":
            out[name] = values.astype("float64")  # None -> NaN
        elif dtype == "int64":
            out[name] = values.astype("int64")
        elif dtype == "Int64":
            out[name] = pd.array(values, dtype="Int64")
        else:
            out[name] = pd.array(values, dtype=cast(Any, dtype))
    return pd.DataFrame(out, index=pd.RangeIndex(n))


def _params(text: Any, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    parsed = cache.get(text)
    if parsed is None:
        parsed = json.loads(text)
        cache[text] = parsed
    # rows with the same parameters share one dict: treat them as read-only
    return parsed
