"""Scheduler decisions (table ``decisions``): what the daemon decided about a pipeline,
when, and why.

Each decision is one row: its ``kind`` (the daemon's vocabulary: ``scheduled``,
``deferred``, ...), when it was taken (``at``), the next start and interval it chose, the
run it concerns, a one-line ``reason``, anything else as the JSON document ``detail``, and
the daemon (``owner_id``, ``host``) that took it. Rows are only ever added.

A mixin of :class:`~planner.history.store.HistoryStore`, as :mod:`planner.history.alerts`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select

from planner.clock import ensure_utc
from planner.history.records import DecisionRecord
from planner.history.schema import decisions

__all__ = ["DecisionLog"]

_IN_CHUNK = 500  # pipelines per IN (...) list


class DecisionLog:
    """The decision methods of the history store (a mixin: the store provides its read and
    write transactions)."""

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def record_decision(
        self,
        pipeline: str,
        kind: str,
        at: datetime,
        reason: str,
        *,
        run_id: str | None = None,
        next_start: datetime | None = None,
        interval_s: float | None = None,
        detail: Mapping[str, Any] | None = None,
        owner_id: str | None = None,
        host: str | None = None,
    ) -> int:
        """Store a decision; returns its id. ``detail`` must be JSON (other values are
        stored as their text)."""
        values = {
            "pipeline": pipeline,
            "at": ensure_utc(at),
            "kind": str(kind),
            "run_id": run_id,
            "next_start": ensure_utc(next_start) if next_start is not None else None,
            "interval_s": float(interval_s) if interval_s is not None else None,
            "reason": reason,
            "detail": json.dumps(dict(detail or {}), sort_keys=True, default=str),
            "owner_id": owner_id,
            "host": host,
        }
        with self._write() as conn:
            key = conn.execute(insert(decisions).values(values)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def decisions(
        self,
        pipeline: str | None = None,
        *,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[DecisionRecord]:
        """Decisions taken at or after ``since`` (of one pipeline, of these kinds), newest
        first (the same instant: the later recorded first), at most ``limit``."""
        query = select(decisions).order_by(decisions.c.at.desc(), decisions.c.id.desc())
        if pipeline is not None:
            query = query.where(decisions.c.pipeline == pipeline)
        if kinds is not None:
            wanted = sorted({str(k) for k in kinds})
            if not wanted:
                return []
            query = query.where(decisions.c.kind.in_(wanted))
        if since is not None:
            query = query.where(decisions.c.at >= ensure_utc(since))
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def last_decisions(
        self, pipelines: Sequence[str] | None, kind: str | Collection[str] | None = None
    ) -> dict[str, DecisionRecord]:
        """Pipeline -> its newest decision of ``kind`` (or of any of several kinds; None:
        of any kind), for
        ``pipelines`` (None: every pipeline with one); a pipeline without one is left
        out. One query (per 500 pipelines)."""
        if pipelines is None:
            chunks: list[list[str] | None] = [None]
        else:
            wanted = list(dict.fromkeys(pipelines))
            chunks = [wanted[i : i + _IN_CHUNK] for i in range(0, len(wanted), _IN_CHUNK)]
        found: dict[str, DecisionRecord] = {}
        with self._read() as conn:
            for chunk in chunks:
                for row in conn.execute(_newest(chunk, kind)):
                    found[row.pipeline] = _record(row)
        return dict(sorted(found.items()))


def _newest(pipelines: list[str] | None, kind: str | Collection[str] | None) -> Any:
    """The newest decision per pipeline (of ``kind``), by a window over (at, id)."""
    rank = (
        func.row_number()
        .over(
            partition_by=decisions.c.pipeline,
            order_by=(decisions.c.at.desc(), decisions.c.id.desc()),
        )
        .label("rank")
    )
    inner = select(*decisions.c, rank)
    if pipelines is not None:
        inner = inner.where(decisions.c.pipeline.in_(pipelines))
    if isinstance(kind, str):
        inner = inner.where(decisions.c.kind == str(kind))
    elif kind is not None:
        inner = inner.where(decisions.c.kind.in_([str(k) for k in kind]))
    ranked = inner.subquery()
    columns = [ranked.c[column.name] for column in decisions.c]
    return select(*columns).where(ranked.c.rank == 1)


def _record(row: Row[Any]) -> DecisionRecord:
    detail = json.loads(row.detail) if row.detail else {}
    return DecisionRecord(
        id=int(row.id),
        pipeline=row.pipeline,
        at=row.at,
        kind=row.kind,
        run_id=row.run_id,
        next_start=row.next_start,
        interval_s=float(row.interval_s) if row.interval_s is not None else None,
        reason=row.reason,
        detail=detail if isinstance(detail, dict) else {"value": detail},
        owner_id=row.owner_id,
        host=row.host,
    )
