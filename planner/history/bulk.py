"""Bulk insert of imported attempts, skipping rows already stored (same source key).

SQLite: one ``INSERT ... ON CONFLICT DO NOTHING`` compiled once and run through the
driver's ``executemany``. PostgreSQL with psycopg 3: the rows are ``COPY``-ed into a
temporary table and moved with one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per
batch (an order of magnitude faster than row-by-row inserts over the network). Values go
through each column type's own bind processor, so times are stored exactly as single
writes store them; the count of inserted rows comes from the database's row count.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam

from planner.errors import StoreError
from planner.history.rows import IMPORT_ORDER
from planner.history.schema import attempts

__all__ = ["BulkInsert"]

_TEMP = "planner_import"


class BulkInsert:
    """Inserts batches of import rows (dicts of :data:`IMPORT_ORDER`) on ``conn``."""

    def __init__(self, conn: Connection, where: str) -> None:
        self._conn = conn
        name = conn.dialect.name
        driver = conn.dialect.driver
        self._copy = name == "postgresql" and driver == "psycopg"
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt: Any = sqlite_insert(attempts)
        elif name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(attempts)
        else:
            raise StoreError(where, f"importing needs SQLite or PostgreSQL, not {name}")
        stmt = stmt.values({c: bindparam(c) for c in IMPORT_ORDER}).on_conflict_do_nothing()
        compiled = stmt.compile(dialect=conn.dialect)
        self._sql = str(compiled)
        self._names: tuple[str, ...] = tuple(compiled.positiontup or IMPORT_ORDER)
        self._positional = bool(compiled.positional)
        self._processors = {
            c: proc
            for c in IMPORT_ORDER
            if (proc := _bind_processor(attempts.c[c].type, conn.dialect)) is not None
        }
        self._temp_ready = False

    def __call__(self, rows: list[dict[str, Any]]) -> int:
        """Insert ``rows``; returns how many were new."""
        for row in rows:
            for column, proc in self._processors.items():
                value = row[column]
                if value is not None:
                    row[column] = proc(value)
        if self._copy:
            return self._copy_rows(rows)
        params: list[Any]
        if self._positional:
            names = self._names
            params = [tuple([row[n] for n in names]) for row in rows]
        else:
            params = rows
        result = self._conn.exec_driver_sql(self._sql, params)
        return int(result.rowcount)

    def _copy_rows(self, rows: list[dict[str, Any]]) -> int:
        columns = ", ".join(IMPORT_ORDER)
        driver = self._conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor:
            if not self._temp_ready:
                cursor.execute(
                    f"CREATE TEMPORARY TABLE {_TEMP} ON COMMIT DROP AS "
                    f"SELECT {columns} FROM {attempts.name} WITH NO DATA"
                )
                self._temp_ready = True
            with cursor.copy(f"COPY {_TEMP} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in IMPORT_ORDER])
            cursor.execute(
                f"INSERT INTO {attempts.name} ({columns}) SELECT {columns} FROM {_TEMP} "
                "ON CONFLICT DO NOTHING"
            )
            inserted = int(cursor.rowcount)
            cursor.execute(f"TRUNCATE {_TEMP}")
        return inserted


def _bind_processor(type_: Any, dialect: Any) -> Any:
    """The full bind processor of a column type for a dialect (TypeDecorator and impl)."""
    return type_.dialect_impl(dialect).bind_processor(dialect)
