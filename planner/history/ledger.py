"""The ledger of trained models: each saved model's digest, kept in the history database.

A model file is a pickle (loading it runs code), and its card sits in the same folder, so
whoever can replace the file can rewrite the card too. The registry therefore trusts a
file only when its sha256 equals the digest recorded here, in the ``trained_models``
table, which a writer of the models folder cannot change.

Rows are keyed by (pipeline, model id) and never overwritten: recording the same digest
again is a no-op, recording another digest under a known key is refused (a model id
clash between two model folders sharing one history), so a recorded digest stays the one
the trainer wrote. Every function runs inside a transaction the store opened
(``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL the insert is ``ON CONFLICT DO NOTHING``
and the row is read again), so concurrent recorders cannot race.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from planner.clock import ensure_utc
from planner.history.schema import trained_models

__all__ = ["DigestConflict", "TrainedModel", "digest", "list_models", "promote", "record"]


@dataclass(frozen=True)
class TrainedModel:
    """One row of the ledger."""

    pipeline: str
    model_id: str
    sha256: str
    size: int | None
    kind: str | None
    created_at: datetime
    recorded_at: datetime
    promoted_at: datetime | None


class DigestConflict(Exception):
    """Another digest is recorded under this (pipeline, model id); carries it."""

    def __init__(self, recorded: str) -> None:
        super().__init__(recorded)
        self.recorded = recorded


def record(
    conn: Connection,
    *,
    pipeline: str,
    model_id: str,
    sha256: str,
    created_at: datetime,
    recorded_at: datetime,
    size: int | None,
    kind: str | None,
) -> None:
    """Record a model's digest; raises :class:`DigestConflict` when another is recorded."""
    values = {
        "pipeline": pipeline,
        "model_id": model_id,
        "sha256": sha256,
        "size": size,
        "kind": kind,
        "created_at": ensure_utc(created_at),
        "recorded_at": ensure_utc(recorded_at),
        "promoted_at": None,
    }
    _insert_if_absent(conn, values)
    recorded = digest(conn, pipeline, model_id)
    if recorded != sha256:
        raise DigestConflict(str(recorded))


def digest(conn: Connection, pipeline: str, model_id: str) -> str | None:
    """The recorded sha256 of a model, ``None`` when it was never recorded."""
    value = conn.execute(
        select(trained_models.c.sha256).where(
            trained_models.c.pipeline == pipeline, trained_models.c.model_id == model_id
        )
    ).scalar()
    return None if value is None else str(value)


def promote(conn: Connection, pipeline: str, model_id: str, promoted_at: datetime) -> bool:
    """Stamp when a recorded model was made current; False when it is not recorded."""
    result = conn.execute(
        update(trained_models)
        .where(trained_models.c.pipeline == pipeline, trained_models.c.model_id == model_id)
        .values(promoted_at=ensure_utc(promoted_at))
    )
    return result.rowcount == 1


def list_models(conn: Connection, pipeline: str | None = None) -> list[TrainedModel]:
    """Recorded models (of one pipeline or all), by pipeline then oldest first."""
    query = select(trained_models).order_by(
        trained_models.c.pipeline, trained_models.c.created_at, trained_models.c.model_id
    )
    if pipeline is not None:
        query = query.where(trained_models.c.pipeline == pipeline)
    return [_trained(row) for row in conn.execute(query)]


def _trained(row: Row[Any]) -> TrainedModel:
    return TrainedModel(**row._asdict())


def _insert_if_absent(conn: Connection, values: dict[str, Any]) -> None:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(trained_models).values(values).on_conflict_do_nothing())
        return
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(trained_models).values(values).on_conflict_do_nothing())
        return
    try:
        with conn.begin_nested():
            conn.execute(insert(trained_models).values(values))
    except IntegrityError:
        pass
