"""The concurrency limit of runs over time (table ``limit_changes``): the starting limit,
then every change an adaptive limit made, written as it happens and read back with the
run (``planner show``: ``limit_changes``).

A mixin of :class:`~planner.history.store.HistoryStore`, as :mod:`planner.history.pauses`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from planner.clock import ensure_utc
from planner.history.schema import limit_changes

__all__ = ["START_REASON", "LimitLog"]

#: The reason of a run's first entry: the limit it started with.
START_REASON = "start"


class LimitLog:
    """The limit-change methods of the history store."""

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def record_limit_change(
        self,
        run_id: str,
        pipeline: str,
        *,
        at: datetime,
        from_limit: int | None,
        to_limit: int,
        reason: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Store one change of ``run_id``'s limit (``from_limit`` None: the start)."""
        row = {
            "run_id": run_id,
            "pipeline": pipeline,
            "at": ensure_utc(at),
            "from_limit": from_limit,
            "to_limit": to_limit,
            "reason": reason,
            "detail": json.dumps(dict(detail or {}), sort_keys=True, default=str),
        }
        with self._write() as conn:
            conn.execute(insert(limit_changes), [row])

    def limit_changes(self, run_id: str) -> list[dict[str, Any]]:
        """The limit changes of ``run_id``, oldest first: ``{at, from, to, reason, detail}``
        (``at`` a UTC datetime; ``from`` None for the start)."""
        t = limit_changes
        query = (
            select(t.c.at, t.c.from_limit, t.c.to_limit, t.c.reason, t.c.detail)
            .where(t.c.run_id == run_id)
            .order_by(t.c.id)
        )
        with self._read() as conn:
            return [
                {
                    "at": row.at,
                    "from": row.from_limit,
                    "to": row.to_limit,
                    "reason": row.reason,
                    "detail": json.loads(row.detail),
                }
                for row in conn.execute(query)
            ]
