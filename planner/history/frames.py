"""The attempts as a pandas DataFrame: the contract between history and learning.

Columns and dtypes are those of docs/ARCHITECTURE.md ("The attempts DataFrame"); times
are ``datetime64[us, UTC]``. pandas is imported here only, when a frame is asked for.
Rows with equal ``params`` share one dict object (it saves a copy per row): read them,
do not edit them in place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from importlib import import_module
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, String, select, type_coerce

from planner.clock import ensure_utc
from planner.gcpause import paused_gc
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
    # Millions of short-lived tuples would start the cyclic garbage collector again and
    # again (each pass walking every tuple read so far): it is paused while reading.
    with paused_gc():
        result = conn.execute(query)
        # Plain driver tuples: no column here has a result processor (times are coerced
        # to text above), and they are far cheaper than SQLAlchemy Row objects.
        records = result.cursor.fetchall() if result.cursor is not None else []
        result.close()
        return _typed(records)


def empty_attempts_frame() -> pd.DataFrame:
    """A frame with the attempts columns and dtypes and no rows."""
    return _typed([])


def _typed(records: Sequence[Any]) -> pd.DataFrame:
    """The frame from the driver's rows: one 2-D object array, then one cast per column."""
    import numpy as np
    import pandas as pd

    n = len(records)
    table = _object_table(records)
    del records
    out: dict[str, Any] = {}
    for index, (name, dtype) in enumerate(FRAME_DTYPES.items()):
        values = table[:, index]
        if name in _TIMES:
            out[name] = pd.to_datetime(values, utc=True, format="ISO8601").astype(dtype)
        elif name == "params":
            out[name] = _params_column(values)
        elif dtype in {"float64", "int64"}:
            out[name] = values.astype(dtype)  # float64: None -> NaN
        elif dtype == "Int64":
            missing = pd.isna(values)
            numbers = np.where(missing, 0, values).astype("int64")
            out[name] = pd.arrays.IntegerArray(numbers, missing)
        else:
            out[name] = pd.array(values, dtype=cast(Any, dtype))
    return pd.DataFrame(out, index=pd.RangeIndex(n))


def _object_table(records: Sequence[Any]) -> Any:
    """The rows as one 2-D object array (rows x columns), without copying the values."""
    import numpy as np

    if not records:
        return np.empty((0, len(FRAME_COLUMNS)), dtype=object)
    rows = records if isinstance(records, list) else list(records)
    # pandas' own helper (what DataFrame(list of tuples) uses) is several times faster
    # than numpy's generic conversion; numpy is the fallback should it ever go away.
    helper = getattr(import_module("pandas._libs.lib"), "to_object_array_tuples", None)
    if helper is None:  # pragma: no cover
        return np.array(rows, dtype=object)
    return helper(rows)


def _params_column(values: Any) -> Any:
    """The decoded ``params``: JSON parsed once per distinct text, ``{}`` when empty."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(values)  # NULL -> -1
    decoded = np.empty(len(uniques) + 1, dtype=object)
    decoded[:-1] = [_params(text) for text in uniques]
    decoded[-1] = {}  # what code -1 (NULL) picks
    # rows with the same parameters share one dict: treat them as read-only
    return decoded[codes]


def _params(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    parsed: dict[str, Any] = json.loads(text)
    return parsed
