"""The history schema: tables, the UTC datetime type, and the schema version.

The schema belongs to the code. The ``meta`` table holds ``schema_version``; an older
version this code can migrate is brought up to date when the database is opened
(:mod:`planner.history.database`), any other version is refused
(:class:`~planner.errors.SchemaVersionError`).

Versions: 1 runs, attempts, leases, plans; 2 adds ``trained_models`` (the digest of every
saved model, which the model registry checks before unpickling); 3 adds ``alerts`` and
``alert_deliveries`` (every alert fired, and each sink's delivery of it) and ``pauses``
(memory-pressure pauses of runs); 4 adds ``leaders`` (the daemon that schedules each
pipeline) and ``decisions`` (what the scheduler decided, when and why); 5 adds
``limit_changes`` (each change of a run's concurrency limit, with its reason).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from planner.clock import ensure_utc

__all__ = [
    "SCHEMA_VERSION",
    "UTCDateTime",
    "alert_deliveries",
    "alerts",
    "attempts",
    "decisions",
    "leaders",
    "leases",
    "limit_changes",
    "meta",
    "metadata",
    "pauses",
    "plans",
    "runs",
    "trained_models",
]

#: Bump on every change to the tables below (and teach the code to migrate or refuse).
SCHEMA_VERSION = 5

#: Row ids: BIGINT on servers, INTEGER on SQLite so that it is the rowid (autoincrement).
_RowId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    SQLite keeps no offset, so values are stored as naive UTC text of fixed width (which
    sorts and compares correctly) and UTC is attached again on read. Servers get
    ``TIMESTAMP WITH TIME ZONE``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = ensure_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return ensure_utc(value)


metadata = MetaData()

meta = Table(
    "planner_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("pipeline", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("owner_id", String(64)),
    Column("concurrency", Integer),
    Column("n_accounts", Integer),
    Column("selection", Text, nullable=False, default="{}"),
    Column("resumed_from", String(64)),
    Index("ix_runs_pipeline_started", "pipeline", "started_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("attempt_id", _RowId, primary_key=True, autoincrement=True),
    Column("run_id", String(255), nullable=False),
    Column("pipeline", String(255), nullable=False),
    Column("step", String(255), nullable=False),
    Column("account", String(255)),
    Column("attempt", Integer, nullable=False, default=1),
    Column("quantity", Float),
    Column("params", Text, nullable=False, default="{}"),
    Column("n_accounts", Integer),
    Column("concurrency", Integer),
    Column("host", String(255)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("duration_s", Float),
    Column("status", String(16), nullable=False),
    Column("exit_code", Integer),
    Column("error_class", String(100)),
    Column("stderr_tail", Text),
    Column("peak_rss_mb", Float),
    Column("cpu_s", Float),
    Column("load_avg", Float),
    Column("free_mem_mb", Float),
    Column("cpu_count", Integer),
    Column("pid", Integer),
    Column("pgid", Integer),
    Column("reason", Text),
    Column("source", String(255), nullable=False, default="planner"),
    Column("source_key", String(255)),
    UniqueConstraint("pipeline", "source", "source_key", name="uq_attempts_source_key"),
    Index("ix_attempts_run", "run_id"),
    Index("ix_attempts_pipeline_started", "pipeline", "started_at"),
    Index("ix_attempts_started", "started_at"),
)

leases = Table(
    "leases",
    metadata,
    Column("pipeline", String(100), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("run_id", String(64)),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

plans = Table(
    "plans",
    metadata,
    Column("plan_id", _RowId, primary_key=True, autoincrement=True),
    Column("pipeline", String(100), nullable=False),
    Column("run_id", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("predicted_s", Float, nullable=False),
    Column("bound_s", Float, nullable=False),
    Column("document", Text, nullable=False),
    Index("ix_plans_pipeline_created", "pipeline", "created_at"),
)

#: One row per saved model: the digest its file must have to be loaded (see
#: planner/learning/registry.py). It lives here, not in the models folder, so that whoever
#: can write that folder cannot make a file of their own trusted. Added in version 2.
trained_models = Table(
    "trained_models",
    metadata,
    Column("pipeline", String(100), primary_key=True),
    Column("model_id", String(100), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger),
    Column("kind", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("promoted_at", UTCDateTime),
)

#: One row per alert fired (see planner/monitoring): what, when, how bad, about which run
#: and task, and the figures it was judged on. Added in version 3.
alerts = Table(
    "alerts",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("pipeline", String(100), nullable=False),
    Column("run_id", String(64)),
    Column("step", String(255)),
    Column("account", String(255)),
    Column("level", String(16), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("elapsed_s", Float),
    Column("predicted_s", Float),
    Column("bound_s", Float),
    Column("eta", UTCDateTime),
    Column("text", Text, nullable=False),
    Index("ix_alerts_pipeline_at", "pipeline", "at"),
    Index("ix_alerts_run", "run_id"),
)

#: One row per (alert, sink): ``pending`` until tried, then ``sent`` or ``failed`` with the
#: last error (one line, secrets removed) and how many tries it took. Added in version 3.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("alert_id", _RowId, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("sink", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("alert_id", "sink", name="uq_alert_deliveries_sink"),
    Index("ix_alert_deliveries_status", "status"),
)

#: One row per memory-pressure pause of a run (``memory_pressure``): when it started and
#: ended, and the rest (memory at start and peak, tasks held back, the cleanup and its
#: exit) as a JSON document. Added in version 3.
pauses = Table(
    "pauses",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("pipeline", String(100), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("detail", Text, nullable=False),
    Index("ix_pauses_run", "run_id"),
)

#: One row per pipeline naming the scheduler daemon that schedules it: the shape of
#: ``leases`` (``run_id`` stays empty), taken and kept the same way
#: (planner/history/leaders.py). Added in version 4.
leaders = Table(
    "leaders",
    metadata,
    Column("pipeline", String(100), primary_key=True),
    Column("owner_id", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("run_id", String(64)),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

#: One row per scheduler decision (started a run, scheduled the next one, deferred...):
#: when, why, the next start and interval it chose, and the rest as a JSON document
#: ``detail``; ``owner_id``/``host`` name the daemon. Added in version 4.
decisions = Table(
    "decisions",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("pipeline", String(100), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("run_id", String(64)),
    Column("next_start", UTCDateTime),
    Column("interval_s", Float),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False, default="{}"),
    Column("owner_id", String(64)),
    Column("host", String(255)),
    Index("ix_decisions_pipeline_at", "pipeline", "at"),
    Index("ix_decisions_kind", "kind"),
)

#: One row per change of a run's concurrency limit: the starting limit (``from_limit``
#: empty, reason ``start``), then every change an adaptive limit made, when and why, with
#: the measurements behind it as a JSON document ``detail``. Added in version 5.
limit_changes = Table(
    "limit_changes",
    metadata,
    Column("id", _RowId, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("pipeline", String(100), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("from_limit", Integer),
    Column("to_limit", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False, default="{}"),
    Index("ix_limit_changes_run", "run_id"),
)
