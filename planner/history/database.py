"""Opening a history database: the engine, SQLite's settings, the schema, error mapping.

SQLite gets, on every connection, a busy timeout and ``synchronous=NORMAL`` (safe in WAL:
a killed process loses nothing committed), and the file is switched to WAL once. pysqlite
begins transactions lazily and deferred; here the driver's own transaction handling is
turned off and SQLAlchemy's ``begin`` event emits ``BEGIN`` itself, ``BEGIN IMMEDIATE``
for write transactions (execution option ``planner_begin="IMMEDIATE"``), so that a write
never has to upgrade a read lock (which fails at once in WAL instead of waiting).

Creating the schema is race-safe: the version is read first; when it is missing, the
tables are created under a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory transaction
lock on PostgreSQL) and the check is repeated there. An older version this code knows how
to migrate (:data:`MIGRATIONS`) is upgraded the same way: under the lock the version is
read again, each step runs, and the new version is written, all in one transaction (DDL is
transactional on SQLite and PostgreSQL), so several processes opening an old database at
once migrate it exactly once and none sees it half done. A version newer than
:data:`~planner.history.schema.SCHEMA_VERSION`, or unknown, is refused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from planner.errors import SchemaVersionError, StoreError
from planner.history.schema import (
    SCHEMA_VERSION,
    alert_deliveries,
    alerts,
    decisions,
    leaders,
    limit_changes,
    meta,
    metadata,
    pauses,
    trained_models,
)

__all__ = [
    "BUSY_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "IMMEDIATE",
    "MIGRATIONS",
    "SERVER_POOL",
    "ensure_schema",
    "mask_url",
    "open_engine",
    "store_errors",
]

#: How long a connection waits for a lock held by another before giving up.
BUSY_TIMEOUT_S = 30.0

#: Execution options for a write transaction (``BEGIN IMMEDIATE`` on SQLite).
IMMEDIATE: dict[str, Any] = {"planner_begin": "IMMEDIATE"}

#: The connection pool of a database server (PostgreSQL), per process. A connection is
#: held only for one short transaction, so a process needs about as many as it has threads
#: that use the history at the same moment: a run has four (the loop's thread, the row
#: writer, the lease heartbeat, the alert delivery), a daemon three (its leadership tick,
#: a worker deciding a start, the metrics or dashboard request being served), the
#: dashboard one per request being answered. ``pool_size`` 4 keeps those open;
#: ``max_overflow`` 4 more for a burst (closed again when returned), so a process never
#: opens more than 8. ``pool_timeout``: a thread waits at most 30 s for a free one, then
#: fails with a StoreError. ``pool_recycle``: a connection older than 30 minutes is
#: replaced (a daemon lives for months; firewalls drop idle connections).
#: ``pool_pre_ping``: each connection is tested when taken from the pool, so after a
#: database restart the dead ones are replaced instead of failing the first statement.
SERVER_POOL: dict[str, Any] = {
    "pool_size": 4,
    "max_overflow": 4,
    "pool_timeout": 30.0,
    "pool_recycle": 1800,
    "pool_pre_ping": True,
}

#: Seconds a new PostgreSQL connection may take before it fails (a host that does not
#: answer at all: without it a connect can hang for minutes in the kernel's retries).
CONNECT_TIMEOUT_S = 10

#: libpq settings that make an open connection to a server that vanished (a host down, a
#: network cut: no reset ever arrives) fail within seconds instead of the kernel's
#: minutes: data unacknowledged for 10 s fails the call, and an idle connection is probed.
#: Without them a lease heartbeat could block past its lease's lifetime.
_PG_DEAD_PEER: dict[str, int] = {
    "tcp_user_timeout": 10_000,  # ms
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

_PG_SCHEMA_LOCK = 0x706C616E6E6572  # "planner": the advisory lock id for schema creation


def mask_url(url: str | URL) -> str:
    """``url`` with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return str(url)


@contextmanager
def store_errors(where: str) -> Iterator[None]:
    """Turn database errors into :class:`StoreError` naming ``where`` and what went wrong."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise StoreError(where, _describe(exc)) from exc


def _describe(exc: SQLAlchemyError) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        message = str(exc.orig).strip() or type(exc.orig).__name__
        # SQLite's "disk I/O error" covers many causes; its extended code says which
        # (SQLITE_IOERR_WRITE: a write failed, e.g. the disk is full or the file too big).
        name = getattr(exc.orig, "sqlite_errorname", None)
        if isinstance(name, str) and name.startswith("SQLITE_IOERR_"):
            message = f"{message} ({name})"
    else:
        message = str(exc).strip() or type(exc).__name__
    return message.splitlines()[0]


def open_engine(url: str | URL) -> Engine:
    """An engine for ``url`` (SQLite: its folder created, settings on every connection)."""
    where = mask_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(where, f"not a database URL: {exc}") from exc
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        _make_sqlite_folder(parsed, where)
    kwargs: dict[str, Any] = {}
    if sqlite:
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    else:
        kwargs.update(SERVER_POOL)
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = _pg_connect_args(parsed)
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StoreError(where, f"cannot use this database: {exc}") from exc
    if sqlite:
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _pg_connect_args(url: URL) -> dict[str, Any]:
    """A connect timeout, dead-peer detection, and an ``application_name`` naming this host
    id and process (``pg_stat_activity`` then says who holds each connection), unless the
    URL sets them."""
    from planner.hosts import host_id

    args: dict[str, Any] = {k: v for k, v in _PG_DEAD_PEER.items() if k not in url.query}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in url.query:
        args["application_name"] = f"planner {host_id()} {os.getpid()}"[:63]
    return args


def _make_sqlite_folder(url: URL, where: str) -> None:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(where, f"cannot create the folder: {exc.strerror or exc}") from exc


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not begin transactions itself: the "begin" event does it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get("planner_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _migrate_1_to_2(conn: Connection) -> None:
    """Version 2: the table of trained models and their digests."""
    trained_models.create(conn, checkfirst=True)


def _migrate_2_to_3(conn: Connection) -> None:
    """Version 3: the alerts fired and their deliveries to each sink; memory pauses."""
    alerts.create(conn, checkfirst=True)
    alert_deliveries.create(conn, checkfirst=True)
    pauses.create(conn, checkfirst=True)


def _migrate_3_to_4(conn: Connection) -> None:
    """Version 4: the scheduler daemon's leaders and decisions."""
    leaders.create(conn, checkfirst=True)
    decisions.create(conn, checkfirst=True)


def _migrate_4_to_5(conn: Connection) -> None:
    """Version 5: the changes of runs' concurrency limits."""
    limit_changes.create(conn, checkfirst=True)


#: version -> the step that brings a database of that version to the next one.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
    3: _migrate_3_to_4,
    4: _migrate_4_to_5,
}


def ensure_schema(engine: Engine, where: str) -> None:
    """Switch SQLite to WAL, create the tables if absent, migrate an older version this
    code knows, refuse any other version."""
    with store_errors(where):
        if engine.dialect.name == "sqlite":
            _ensure_wal(engine, where)
        with engine.connect() as conn:
            version = _read_version(conn)
        if version is None or _migratable(version):
            _upgrade_schema(engine)
            with engine.connect() as conn:
                version = _read_version(conn)
    if version != str(SCHEMA_VERSION):
        raise SchemaVersionError(
            where,
            f"the history has schema version {version}; this planner knows versions up to "
            f"{SCHEMA_VERSION}: upgrade planner to read it",
        )


def _migratable(version: str) -> bool:
    return version.isdigit() and int(version) in MIGRATIONS


def _read_version(conn: Connection) -> str | None:
    if not inspect(conn).has_table(meta.name):
        conn.rollback()
        return None
    value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    conn.rollback()
    return value


def _upgrade_schema(engine: Engine) -> None:
    """Under the schema lock: create every table when there is no version, else run the
    migrations from the version found (read again under the lock) to the current one."""
    name = engine.dialect.name
    with engine.connect() as plain:
        conn = plain.execution_options(**IMMEDIATE)
        with conn.begin():
            if name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
            current = None
            if inspect(conn).has_table(meta.name):
                current = conn.execute(
                    select(meta.c.value).where(meta.c.key == "schema_version")
                ).scalar()
            if current is None:
                metadata.create_all(conn, checkfirst=True)
                conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
            while _migratable(current):
                step = int(current)
                MIGRATIONS[step](conn)
                current = str(step + 1)
                conn.execute(
                    update(meta).where(meta.c.key == "schema_version").values(value=current)
                )


def _ensure_wal(engine: Engine, where: str) -> None:
    """Put the SQLite file in WAL mode (persistent); retries while others hold locks."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    with engine.connect() as conn:  # (wraps connection errors, unlike raw_connection)
        driver = conn.connection.driver_connection
        assert driver is not None
        try:
            mode = driver.execute("PRAGMA journal_mode").fetchone()[0]
        except Exception as exc:  # sqlite3.DatabaseError: file is not a database
            raise StoreError(where, str(exc) or type(exc).__name__) from exc
        while mode not in {"wal", "memory"}:
            try:
                mode = driver.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except Exception as exc:  # sqlite3.OperationalError: database is locked
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(where, f"cannot switch to WAL: {exc}") from exc
                time.sleep(0.05)
                continue
            if mode not in {"wal", "memory"}:
                raise StoreError(where, f"cannot switch to WAL: journal mode stays {mode!r}")
