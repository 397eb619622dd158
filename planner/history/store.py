"""The history store: runs, attempts, leases, plans and the digests of trained models
in any SQLAlchemy database.

Default: a SQLite file ``<state_dir>/history.db`` in WAL mode; PostgreSQL (or any URL
SQLAlchemy knows) to share one history and one set of leases between hosts. Every write is
one short transaction (``BEGIN IMMEDIATE`` on SQLite); every database failure surfaces as
:class:`~planner.errors.StoreError` naming the URL (password hidden) and what went wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from planner.clock import SYSTEM_CLOCK, Clock, ensure_utc
from planner.errors import StoreError
from planner.history import leases as lease_ops
from planner.history import ledger
from planner.history.alerts import AlertLog
from planner.history.bulk import BulkInsert
from planner.history.database import IMMEDIATE, ensure_schema, mask_url, open_engine, store_errors
from planner.history.decisions import DecisionLog
from planner.history.leaders import LeaderLog, LeaseLog
from planner.history.limits import LimitLog
from planner.history.location import history_url
from planner.history.pauses import PauseLog
from planner.history.reconnect import AttemptLookup
from planner.history.records import (
    AttemptOutcome,
    AttemptRecord,
    AttemptStart,
    AttemptStatus,
    ImportResult,
    PlanRecord,
    RunRecord,
    RunStatus,
    task_counts,
)
from planner.history.rows import (
    attempt_record,
    import_row,
    outcome_values,
    plan_record,
    run_record,
    start_values,
)
from planner.history.schema import attempts, plans, runs
from planner.history.stats import StatsLog

if TYPE_CHECKING:
    import pandas as pd

    from planner.config import Pipeline

__all__ = ["HistoryStore"]

_IMPORT_BATCH = 5000
_IN_CHUNK = 500  # run ids per IN (...) list: well under every backend's parameter limit

# Statements built once: the values travel as parameters, so SQLAlchemy reuses the
# compiled form instead of coercing every value into the statement on each call.
_INSERT_ATTEMPT = insert(attempts)
_FINISH_ATTEMPT = update(attempts).where(attempts.c.attempt_id == bindparam("b_attempt_id"))
_RUN_STATUSES = frozenset(s.value for s in RunStatus)


class HistoryStore(
    AlertLog, AttemptLookup, DecisionLog, LeaseLog, LeaderLog, LimitLog, PauseLog, StatsLog
):
    """Runs, attempts, leases, plans and alerts of every pipeline, in one database.

    ``HistoryStore(url)`` creates the schema if absent (safe when many processes open a
    database that does not exist yet), switches SQLite to WAL, and refuses a database
    whose schema version it does not know. ``alive`` decides whether a lease holder on
    this host still runs (default: its pid exists and is not a zombie), for leases and
    leaders. The mixins bring alerts (``record_alert``, ``alerts``...), scheduler
    decisions and leaders (``record_decision``, ``acquire_leader``...), pauses and stats.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        alive: lease_ops.HolderAlive = lease_ops.holder_process_alive,
    ) -> None:
        self.url = mask_url(url)
        self._clock = clock
        self._alive = alive
        self._engine = open_engine(url)
        self._write_engine = self._engine.execution_options(**IMMEDIATE)
        try:
            ensure_schema(self._engine, self.url)
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def for_pipeline(
        cls, pipeline: Pipeline, db: str | None = None, *, clock: Clock = SYSTEM_CLOCK
    ) -> HistoryStore:
        """The store of ``pipeline``: ``db``, else ``$PLANNER_DB``, else its state dir."""
        return cls(history_url(db, pipeline.state_dir), clock=clock)

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql``, ..."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HistoryStore({self.url!r})"

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with store_errors(self.url), self._write_engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with store_errors(self.url), self._engine.connect() as conn:
            yield conn

    # -- runs ---------------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        pipeline: str,
        started_at: datetime,
        host: str | None = None,
        pid: int | None = None,
        concurrency: int | None = None,
        n_accounts: int | None = None,
        selection: Mapping[str, Any] | None = None,
        resumed_from: str | None = None,
        owner_id: str | None = None,
    ) -> None:
        """Record a new run, status ``running``."""
        values = {
            "run_id": run_id,
            "pipeline": pipeline,
            "status": RunStatus.RUNNING.value,
            "started_at": ensure_utc(started_at),
            "host": host,
            "pid": pid,
            "owner_id": owner_id,
            "concurrency": concurrency,
            "n_accounts": n_accounts,
            "selection": json.dumps(dict(selection or {}), sort_keys=True, default=str),
            "resumed_from": resumed_from,
        }
        try:
            with self._write() as conn:
                conn.execute(insert(runs).values(values))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise StoreError(self.url, f"run {run_id} already exists") from exc
            raise

    def finish_run(self, run_id: str, status: RunStatus | str, finished_at: datetime) -> None:
        """Set the final status of a run."""
        text = str(status.value if isinstance(status, RunStatus) else status)
        if text not in _RUN_STATUSES:
            raise ValueError(f"unknown run status {text!r}")
        with self._write() as conn:
            result = conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(status=text, finished_at=ensure_utc(finished_at))
            )
        if result.rowcount != 1:
            raise StoreError(self.url, f"no run {run_id}")

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run ``run_id``, or ``None``."""
        with self._read() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).one_or_none()
        return run_record(row) if row is not None else None

    def list_runs(self, pipeline: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        query = select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        if pipeline is not None:
            query = query.where(runs.c.pipeline == pipeline)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [run_record(row) for row in conn.execute(query)]

    def run_task_counts(self, run_id: str) -> dict[str, int]:
        """Final status -> number of tasks, counting the last attempt of each task."""
        return self.runs_task_counts([run_id]).get(run_id, {})

    def runs_task_counts(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """:meth:`run_task_counts` of several runs, read together (no entry: no attempts)."""
        columns = (
            attempts.c.run_id,
            attempts.c.step,
            attempts.c.account,
            attempts.c.status,
            attempts.c.attempt,
            attempts.c.started_at,
            attempts.c.attempt_id,
        )
        wanted = list(dict.fromkeys(run_ids))
        by_run: dict[str, list[Any]] = {}
        with self._read() as conn:
            for first in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[first : first + _IN_CHUNK]
                query = select(*columns).where(attempts.c.run_id.in_(chunk))
                for row in conn.execute(query):
                    by_run.setdefault(row.run_id, []).append(row)
        return {run_id: task_counts(rows) for run_id, rows in by_run.items()}

    def abandon_run(self, run_id: str, now: datetime) -> list[int]:
        """Mark a dead run ``abandoned`` and its ``running`` attempts ``interrupted``.

        Returns the process-group ids those attempts recorded, so the caller can stop
        whatever they left running. A run that already ended keeps its status.
        """
        now = ensure_utc(now)
        with self._write() as conn:
            pgids = conn.execute(
                select(attempts.c.pgid)
                .where(
                    attempts.c.run_id == run_id,
                    attempts.c.status == AttemptStatus.RUNNING.value,
                    attempts.c.pgid.is_not(None),
                )
                .distinct()
            ).scalars()
            groups = sorted(int(g) for g in pgids)
            self._interrupt(conn, run_id, now, "its run was abandoned")
            conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id, runs.c.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.ABANDONED.value, finished_at=now)
            )
        return groups

    # -- attempts -------------------------------------------------------------------------

    def start_attempt(self, start: AttemptStart) -> int:
        """Write an attempt as it starts (status ``running``); returns its id."""
        with self._write() as conn:
            result = conn.execute(_INSERT_ATTEMPT, start_values(start))
            key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def finish_attempt(self, attempt_id: int, outcome: AttemptOutcome) -> None:
        """Write how an attempt ended."""
        values = outcome_values(outcome)
        values["b_attempt_id"] = attempt_id
        with self._write() as conn:
            result = conn.execute(_FINISH_ATTEMPT, values)
        if result.rowcount != 1:
            raise StoreError(self.url, f"no attempt {attempt_id}")

    def record_skipped(self, start: AttemptStart, reason: str) -> int:
        """Record a task that was not run (a dependency failed); returns its id."""
        values = start_values(start)
        values.update(
            status=AttemptStatus.SKIPPED.value,
            finished_at=values["started_at"],
            reason=reason,
            pid=None,
            pgid=None,
        )
        with self._write() as conn:
            key = conn.execute(_INSERT_ATTEMPT, values).inserted_primary_key
        assert key is not None
        return int(key[0])

    def attempts_for_run(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt of a run, in start order."""
        query = (
            select(attempts)
            .where(attempts.c.run_id == run_id)
            .order_by(attempts.c.started_at, attempts.c.attempt_id)
        )
        with self._read() as conn:
            return [attempt_record(row) for row in conn.execute(query)]

    def interrupt_running(self, run_id: str, now: datetime | None = None) -> int:
        """Turn a run's ``running`` attempts into ``interrupted``; returns how many."""
        stamp = ensure_utc(now) if now is not None else self._clock.now()
        with self._write() as conn:
            return self._interrupt(conn, run_id, stamp, "interrupted")

    @staticmethod
    def _interrupt(conn: Connection, run_id: str, now: datetime, reason: str) -> int:
        result = conn.execute(
            update(attempts)
            .where(attempts.c.run_id == run_id, attempts.c.status == AttemptStatus.RUNNING.value)
            .values(status=AttemptStatus.INTERRUPTED.value, finished_at=now, reason=reason)
        )
        return int(result.rowcount)

    def import_attempts(self, rows: Iterable[Mapping[str, Any]], source: str) -> ImportResult:
        """Insert attempts from another system, in one transaction, skipping known ones.

        Each row is a mapping of attempt columns plus ``source_key``, which identifies it
        within ``source``: rows whose (pipeline, source, source_key) is stored already
        count as duplicates. A malformed row raises ``ValueError`` and nothing is stored.
        """
        inserted = total = 0
        with self._write() as conn:
            insert_many = BulkInsert(conn, self.url)
            batch: list[dict[str, Any]] = []
            for number, raw in enumerate(rows, start=1):
                try:
                    batch.append(import_row(raw, source))
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{source}: row {number}: {exc}") from exc
                if len(batch) >= _IMPORT_BATCH:
                    inserted += insert_many(batch)
                    total += len(batch)
                    batch = []
            if batch:
                inserted += insert_many(batch)
                total += len(batch)
        return ImportResult(source=source, inserted=inserted, duplicates=total - inserted)

    def count_attempts(self, pipeline: str | None = None, source: str | None = None) -> int:
        """How many attempts are stored (for one pipeline / source)."""
        query = select(func.count()).select_from(attempts)
        if pipeline is not None:
            query = query.where(attempts.c.pipeline == pipeline)
        if source is not None:
            query = query.where(attempts.c.source == source)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def attempts_frame(
        self,
        pipeline: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pd.DataFrame:
        """Attempts started in [since, until) as a DataFrame (see docs/ARCHITECTURE.md)."""
        from planner.history.frames import read_attempts

        with self._read() as conn:
            return read_attempts(conn, pipeline=pipeline, since=since, until=until)

    # -- plans ----------------------------------------------------------------------------

    def save_plan(  # noqa: PLR0917 (the documented positional contract)
        self,
        pipeline: str,
        run_id: str | None,
        created_at: datetime,
        predicted_s: float,
        bound_s: float,
        document: Mapping[str, Any],
    ) -> int:
        """Store a plan; returns its id."""
        values = {
            "pipeline": pipeline,
            "run_id": run_id,
            "created_at": ensure_utc(created_at),
            "predicted_s": float(predicted_s),
            "bound_s": float(bound_s),
            "document": json.dumps(dict(document), sort_keys=True, default=str),
        }
        with self._write() as conn:
            key = conn.execute(insert(plans).values(values)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def plans(
        self, pipeline: str, limit: int | None = None, *, run_id: str | None = None
    ) -> list[PlanRecord]:
        """Stored plans of ``pipeline`` (of one run: ``run_id``), newest first."""
        query = (
            select(plans)
            .where(plans.c.pipeline == pipeline)
            .order_by(plans.c.created_at.desc(), plans.c.plan_id.desc())
        )
        if run_id is not None:
            query = query.where(plans.c.run_id == run_id)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [plan_record(row) for row in conn.execute(query)]

    def run_predictions(
        self, *, pipeline: str | None = None, run_ids: Sequence[str] | None = None
    ) -> dict[str, tuple[float, float]]:
        """``{run_id: (predicted_s, bound_s)}`` of the plans stored with a run id (of one
        pipeline, or of ``run_ids``; the newest plan of a run wins). Documents are not read."""
        query = select(plans.c.run_id, plans.c.predicted_s, plans.c.bound_s).where(
            plans.c.run_id.is_not(None)
        )
        if pipeline is not None:
            query = query.where(plans.c.pipeline == pipeline)
        if run_ids is not None:
            if not run_ids:
                return {}
            query = query.where(plans.c.run_id.in_(list(run_ids)))
        query = query.order_by(plans.c.created_at, plans.c.plan_id)
        with self._read() as conn:
            return {row[0]: (float(row[1]), float(row[2])) for row in conn.execute(query)}

    # -- trained models: the ledger the model registry checks before unpickling -----------

    def record_model(
        self,
        pipeline: str,
        model_id: str,
        sha256: str,
        created_at: datetime,
        *,
        size: int | None = None,
        kind: str | None = None,
    ) -> None:
        """Record a saved model's digest (again with the same digest: nothing happens;
        with another digest: StoreError, the recorded one is kept)."""
        try:
            with self._write() as conn:
                ledger.record(
                    conn,
                    pipeline=pipeline,
                    model_id=model_id,
                    sha256=sha256,
                    created_at=created_at,
                    recorded_at=self._clock.now(),
                    size=size,
                    kind=kind,
                )
        except ledger.DigestConflict as exc:
            raise StoreError(
                self.url,
                f"model {pipeline}/{model_id} is recorded already with another digest "
                f"({exc.recorded[:12]}...): not replaced",
            ) from None

    def model_digest(self, pipeline: str, model_id: str) -> str | None:
        """The recorded sha256 of a model, ``None`` when it was never recorded here."""
        with self._read() as conn:
            return ledger.digest(conn, pipeline, model_id)

    def record_promotion(self, pipeline: str, model_id: str, promoted_at: datetime) -> bool:
        """Stamp when a recorded model was made current; False when it is not recorded."""
        with self._write() as conn:
            return ledger.promote(conn, pipeline, model_id, promoted_at)

    def trained_models(self, pipeline: str | None = None) -> list[ledger.TrainedModel]:
        """Recorded models (of one pipeline or all), by pipeline then oldest first."""
        with self._read() as conn:
            return ledger.list_models(conn, pipeline)
