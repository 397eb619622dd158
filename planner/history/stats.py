"""Grouped counts of the history for metrics (runs by status, duration buckets, active
runs and tasks, failures by error class, retries), in five read-only queries; the
pipelines that have runs; and the size of the database (for the report).

A mixin of :class:`~planner.history.store.HistoryStore`, as :mod:`planner.history.alerts`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, case, func, select

from planner.history.schema import attempts, runs

__all__ = ["Buckets", "HistoryStats", "StatsLog", "read_stats"]

_FAILED = ("failed", "timed_out")
_NOT_FINISHED = ("running", "skipped")


class StatsLog:
    """The stats methods of the history store (grouped counts, the database's size)."""

    _engine: Engine

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def history_stats(
        self, pipelines: Sequence[str] | None, since: datetime, bounds: Sequence[float]
    ) -> HistoryStats:
        """Grouped counts of ``pipelines`` (None: all); durations of what started (tasks)
        or finished (runs) since ``since``, in buckets with upper bounds ``bounds``."""
        with self._read() as conn:
            return read_stats(conn, pipelines, since, bounds)

    def run_pipelines(self) -> list[str]:
        """Every pipeline with a stored run, sorted."""
        query = select(runs.c.pipeline).distinct().order_by(runs.c.pipeline)
        with self._read() as conn:
            return [str(name) for name in conn.execute(query).scalars()]

    def database_size(self) -> int | None:
        """Bytes the history takes: a SQLite file with its ``-wal``; a PostgreSQL
        database's ``pg_database_size``; None for an in-memory or another database."""
        url = self._engine.url
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            if not url.database or url.database == ":memory:":
                return None
            files = (Path(url.database), Path(f"{url.database}-wal"))
            return sum(path.stat().st_size for path in files if path.exists())
        if dialect == "postgresql":
            with self._read() as conn:
                size = conn.execute(select(func.pg_database_size(func.current_database())))
                return int(size.scalar_one())
        return None


@dataclass
class HistoryStats:
    """Grouped counts of the history (for metrics): see :meth:`StatsLog.history_stats`."""

    pipelines: set[str]
    runs_by_status: dict[tuple[str, ...], float]
    active_runs: dict[str, int]
    active_tasks: dict[str, int]
    run_durations: dict[tuple[str, ...], Buckets]
    task_durations: dict[tuple[str, ...], Buckets]
    failures: dict[tuple[str, ...], float]
    retries: dict[tuple[str, ...], float]


@dataclass
class Buckets:
    """Cumulative counts per bucket (upper bounds ``bounds``), then +Inf, and the sum."""

    counts: list[float]
    total: float

    @classmethod
    def of(cls, values: Iterable[float], bounds: Sequence[float]) -> Buckets:
        buckets = cls([0.0] * (len(bounds) + 1), 0.0)
        for value in values:
            buckets.total += value
            for i, bound in enumerate(bounds):
                if value <= bound:
                    buckets.counts[i] += 1
            buckets.counts[-1] += 1
        return buckets


def read_stats(
    conn: Connection, pipelines: Sequence[str] | None, since: datetime, bounds: Sequence[float]
) -> HistoryStats:
    """Every grouped count the collector needs, in five queries."""

    def only(query: Any, table: Any) -> Any:
        return query if pipelines is None else query.where(table.c.pipeline.in_(pipelines))

    runs_by_status: dict[tuple[str, ...], float] = {}
    active_runs: dict[str, int] = {}
    seen: set[str] = set()
    query = select(runs.c.pipeline, runs.c.status, func.count()).group_by(
        runs.c.pipeline, runs.c.status
    )
    for pipeline, status, n in conn.execute(only(query, runs)):
        seen.add(pipeline)
        runs_by_status[(pipeline, status)] = float(n)
        if status == "running":
            active_runs[pipeline] = int(n)

    query = select(runs.c.pipeline, runs.c.started_at, runs.c.finished_at).where(
        runs.c.finished_at.is_not(None),
        runs.c.finished_at >= since,
        runs.c.status != "abandoned",
    )
    durations: dict[str, list[float]] = defaultdict(list)
    for pipeline, started, finished in conn.execute(only(query, runs)):
        durations[pipeline].append(max(0.0, (finished - started).total_seconds()))
    run_durations: dict[tuple[str, ...], Buckets] = {
        (p,): Buckets.of(d, bounds) for p, d in durations.items()
    }

    bucket_columns = [
        func.sum(case((attempts.c.duration_s <= bound, 1), else_=0)) for bound in bounds
    ]
    query = (
        select(
            attempts.c.pipeline,
            attempts.c.step,
            func.count(),
            func.sum(attempts.c.duration_s),
            *bucket_columns,
        )
        .where(
            attempts.c.started_at >= since,
            attempts.c.duration_s.is_not(None),
            attempts.c.status.not_in(_NOT_FINISHED),
        )
        .group_by(attempts.c.pipeline, attempts.c.step)
    )
    task_durations: dict[tuple[str, ...], Buckets] = {}
    for pipeline, step, n, total, *counts in conn.execute(only(query, attempts)):
        seen.add(pipeline)
        cumulative = [float(c or 0) for c in counts] + [float(n)]
        task_durations[(pipeline, step)] = Buckets(cumulative, float(total or 0.0))

    running = select(runs.c.run_id).where(runs.c.status == "running")
    query = (
        select(attempts.c.pipeline, func.count())
        .where(attempts.c.run_id.in_(running), attempts.c.status == "running")
        .group_by(attempts.c.pipeline)
    )
    active_tasks = {p: int(n) for p, n in conn.execute(only(query, attempts))}

    error_class = func.coalesce(attempts.c.error_class, "unknown")
    query = (
        select(
            attempts.c.pipeline,
            attempts.c.step,
            error_class,
            func.sum(case((attempts.c.status.in_(_FAILED), 1), else_=0)),
            func.sum(case((attempts.c.attempt > 1, 1), else_=0)),
        )
        .where(attempts.c.status.in_(_FAILED) | (attempts.c.attempt > 1))
        .group_by(attempts.c.pipeline, attempts.c.step, error_class)
    )
    failures: dict[tuple[str, ...], float] = {}
    retries: dict[tuple[str, ...], float] = defaultdict(float)
    for pipeline, step, klass, failed, retried in conn.execute(only(query, attempts)):
        seen.add(pipeline)
        if failed:
            failures[(pipeline, step, klass)] = float(failed)
        retries[(pipeline, step)] += float(retried or 0)
    return HistoryStats(
        seen,
        runs_by_status,
        active_runs,
        active_tasks,
        run_durations,
        task_durations,
        failures,
        {k: v for k, v in retries.items() if v},
    )
