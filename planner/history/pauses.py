"""The memory-pressure pauses of runs (table ``pauses``): written when the run ends,
read back with the run (``planner show``).

A mixin of :class:`~planner.history.store.HistoryStore`, as :mod:`planner.history.alerts`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from planner.history.schema import pauses

__all__ = ["PauseLog"]


class PauseLog:
    """The pause methods of the history store."""

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def record_pauses(
        self, run_id: str, pipeline: str, documents: Sequence[Mapping[str, Any]]
    ) -> None:
        """Store a run's pauses (each the ``as_dict()`` of a pressure pause: ISO times)."""
        if not documents:
            return
        rows = [
            {
                "run_id": run_id,
                "pipeline": pipeline,
                "started_at": _time(d["started_at"]),
                "ended_at": datetime.fromisoformat(str(d["ended_at"]))
                if d.get("ended_at")
                else None,
                "detail": json.dumps(dict(d), sort_keys=True, default=str),
            }
            for d in documents
        ]
        with self._write() as conn:
            conn.execute(insert(pauses), rows)

    def pauses_for_run(self, run_id: str) -> list[dict[str, Any]]:
        """The pauses of ``run_id``, oldest first, as they were recorded."""
        query = select(pauses.c.detail).where(pauses.c.run_id == run_id).order_by(pauses.c.id)
        with self._read() as conn:
            return [json.loads(row[0]) for row in conn.execute(query)]


def _time(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))
