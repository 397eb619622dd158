"""The columns of the analysis frames: one spec per frame, from which both the frame's
dtypes and its loader's documentation come.

A :class:`Column` names a column, its pandas dtype, its unit and what it means;
:func:`documented` appends the table of a spec to a function's docstring (what
``help()`` and Jupyter's ``?`` show), and :func:`typed_frame` builds the frame from rows
with exactly those columns, in that order, with those dtypes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TIME", "Column", "conform", "documented", "typed_frame"]

_F = TypeVar("_F", bound=Callable[..., Any])
#: The dtype of every time column: aware UTC, as in the attempts frame.
TIME = "datetime64[us, UTC]"


@dataclass(frozen=True)
class Column:
    """A column of an analysis frame: its name, pandas dtype, unit (``""``: none) and
    meaning."""

    name: str
    dtype: str
    unit: str
    meaning: str


def documented(spec: Sequence[Column], intro: str = "Columns") -> Callable[[_F], _F]:
    """Append the table of ``spec`` (name, dtype, unit, meaning) to the function's
    docstring."""
    width = max(len(c.name) for c in spec)
    kinds = max(len(c.dtype) for c in spec)
    lines = [
        f"    {c.name:<{width}}  {c.dtype:<{kinds}}  {(c.unit or '-'):<5}  {c.meaning}"
        for c in spec
    ]
    table = f"\n\n    {intro} (name, dtype, unit, meaning)::\n\n" + "\n".join(
        "    " + line for line in lines
    )

    def decorate(function: _F) -> _F:
        function.__doc__ = (function.__doc__ or "").rstrip() + table + "\n"
        return function

    return decorate


def typed_frame(rows: Iterable[Mapping[str, Any]], spec: Sequence[Column]) -> pd.DataFrame:
    """A frame of ``rows`` (mappings by column name; a missing key is a missing value)
    with the columns of ``spec``, in order, cast to their dtypes (times parsed as UTC)."""
    import numpy as np
    import pandas as pd

    records = list(rows)
    out: dict[str, Any] = {}
    for column in spec:
        values = [row.get(column.name) for row in records]
        if column.dtype == TIME:
            times = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
            out[column.name] = times.astype(cast(Any, TIME))
        elif column.dtype == "object":  # dicts and lists, one per row, never broadcast
            cells = np.empty(len(values), dtype=object)
            for index, value in enumerate(values):
                cells[index] = value
            out[column.name] = pd.Series(cells, dtype=object)
        elif column.dtype == "float64":
            out[column.name] = pd.Series(
                [float("nan") if v is None else v for v in values], dtype="float64"
            )
        else:  # nullable dtypes ("string", "Int64", "boolean") take None as <NA>
            out[column.name] = pd.Series(values, dtype=cast(Any, column.dtype))
    return pd.DataFrame(out, index=pd.RangeIndex(len(records)))


def conform(frame: pd.DataFrame, spec: Sequence[Column]) -> pd.DataFrame:
    """The columns of ``spec`` taken from ``frame``, in order, cast to their dtypes, with
    a fresh index (a column ``frame`` lacks is all missing)."""
    import pandas as pd

    out: dict[str, Any] = {}
    for column in spec:
        if column.name in frame.columns:
            values = frame[column.name].reset_index(drop=True)
        else:
            values = pd.Series([None] * len(frame), dtype=object)
        if column.dtype == TIME:
            out[column.name] = pd.to_datetime(values, utc=True).astype(cast(Any, TIME))
        elif column.dtype == "object":
            out[column.name] = values.astype(object)
        else:
            out[column.name] = values.astype(cast(Any, column.dtype))
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))
