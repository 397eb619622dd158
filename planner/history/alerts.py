"""Alerts in the history: every alert fired, and its delivery to each sink.

An alert is one row of ``alerts``; each sink that should hear of it gets one row of
``alert_deliveries`` keyed by (alert id, sink label), written ``pending`` in the same
transaction as the alert, so an alert whose sinks are all down is still recorded at
once. The delivery thread (planner/monitoring/delivery.py) then updates that row to
``sent`` or ``failed`` with its number of tries and the last error. A ``sent`` row is
never changed again, so two processes retrying the same delivery cannot turn a success
back into a failure.

The SQL lives in plain functions taking a connection (like ledger.py); :class:`AlertLog`
is the part of :class:`~planner.history.store.HistoryStore` that exposes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from planner.clock import Clock, ensure_utc
from planner.errors import StoreError
from planner.history.records import AlertRecord, DeliveryRecord, DeliveryStatus
from planner.history.schema import alert_deliveries, alerts

__all__ = [
    "AlertLog",
    "insert_alert",
    "insert_delivery",
    "list_alerts",
    "list_unsent",
    "one_line",
    "set_delivery",
]

_IN_CHUNK = 500  # alert ids per IN (...) list
_STATUSES = frozenset(s.value for s in DeliveryStatus)
_ERROR_CHARS = 500  # the stored error: one line, at most this long


def insert_alert(
    conn: Connection, values: dict[str, Any], sinks: Sequence[str], now: datetime
) -> int:
    """Insert an alert and a ``pending`` delivery for each sink label; returns its id."""
    key = conn.execute(insert(alerts).values(values)).inserted_primary_key
    assert key is not None
    alert_id = int(key[0])
    for sink in dict.fromkeys(sinks):
        insert_delivery(conn, alert_id, sink, DeliveryStatus.PENDING, 0, None, now, None)
    return alert_id


def insert_delivery(  # noqa: PLR0917 (internal, called positionally by the store)
    conn: Connection,
    alert_id: int,
    sink: str,
    status: DeliveryStatus | str,
    attempts: int,
    last_error: str | None,
    now: datetime,
    sent_at: datetime | None,
) -> int:
    """Insert one delivery row; returns its id."""
    values = {
        "alert_id": alert_id,
        "sink": sink,
        "status": _status(status),
        "attempts": int(attempts),
        "last_error": one_line(last_error),
        "updated_at": ensure_utc(now),
        "sent_at": ensure_utc(sent_at) if sent_at is not None else None,
    }
    key = conn.execute(insert(alert_deliveries).values(values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def set_delivery(  # noqa: PLR0917 (internal, called positionally by the store)
    conn: Connection,
    alert_id: int,
    sink: str,
    status: DeliveryStatus | str,
    attempts: int,
    last_error: str | None,
    now: datetime,
    sent_at: datetime | None,
) -> bool:
    """Update the delivery (alert id, sink) unless it is ``sent``; False when no row
    changed (no such delivery, or it was sent already)."""
    result = conn.execute(
        update(alert_deliveries)
        .where(
            alert_deliveries.c.alert_id == alert_id,
            alert_deliveries.c.sink == sink,
            alert_deliveries.c.status != DeliveryStatus.SENT.value,
        )
        .values(
            status=_status(status),
            attempts=int(attempts),
            last_error=one_line(last_error),
            updated_at=ensure_utc(now),
            sent_at=ensure_utc(sent_at) if sent_at is not None else None,
        )
    )
    return result.rowcount == 1


def list_alerts(
    conn: Connection,
    *,
    pipeline: str | None = None,
    since: datetime | None = None,
    run_id: str | None = None,
    unsent_only: bool = False,
) -> list[AlertRecord]:
    """Alerts, oldest first, each with its deliveries (only the unsent ones, and only
    alerts that have one, when ``unsent_only``)."""
    query = select(alerts).order_by(alerts.c.at, alerts.c.id)
    if pipeline is not None:
        query = query.where(alerts.c.pipeline == pipeline)
    if since is not None:
        query = query.where(alerts.c.at >= ensure_utc(since))
    if run_id is not None:
        query = query.where(alerts.c.run_id == run_id)
    if unsent_only:
        unsent = select(alert_deliveries.c.alert_id).where(
            alert_deliveries.c.status != DeliveryStatus.SENT.value
        )
        query = query.where(alerts.c.id.in_(unsent))
    rows = list(conn.execute(query))
    by_alert = _deliveries(conn, [int(row.id) for row in rows], unsent_only)
    return [_alert_record(row, by_alert.get(int(row.id), ())) for row in rows]


def list_unsent(conn: Connection, pipeline: str | None = None) -> list[AlertRecord]:
    """Alerts with a delivery still ``pending`` or ``failed``, carrying only those."""
    return list_alerts(conn, pipeline=pipeline, unsent_only=True)


def one_line(text: str | None) -> str | None:
    """``text`` as one stripped line of at most 500 characters (``None`` stays)."""
    if text is None:
        return None
    line = " ".join(str(text).split())
    return line if len(line) <= _ERROR_CHARS else line[: _ERROR_CHARS - 3] + "..."


def _status(status: DeliveryStatus | str) -> str:
    value = str(status.value if isinstance(status, DeliveryStatus) else status)
    if value not in _STATUSES:
        known = ", ".join(sorted(_STATUSES))
        raise ValueError(f"unknown delivery status {value!r} (known: {known})")
    return value


def _deliveries(
    conn: Connection, alert_ids: list[int], unsent_only: bool
) -> dict[int, tuple[DeliveryRecord, ...]]:
    found: dict[int, list[DeliveryRecord]] = {}
    for first in range(0, len(alert_ids), _IN_CHUNK):
        chunk = alert_ids[first : first + _IN_CHUNK]
        query = (
            select(alert_deliveries)
            .where(alert_deliveries.c.alert_id.in_(chunk))
            .order_by(alert_deliveries.c.alert_id, alert_deliveries.c.id)
        )
        if unsent_only:
            query = query.where(alert_deliveries.c.status != DeliveryStatus.SENT.value)
        for row in conn.execute(query):
            found.setdefault(int(row.alert_id), []).append(_delivery_record(row))
    return {key: tuple(value) for key, value in found.items()}


def _delivery_record(row: Row[Any]) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=int(row.id),
        alert_id=int(row.alert_id),
        sink=row.sink,
        status=row.status,
        attempts=int(row.attempts),
        last_error=row.last_error,
        updated_at=row.updated_at,
        sent_at=row.sent_at,
    )


def _alert_record(row: Row[Any], deliveries: tuple[DeliveryRecord, ...]) -> AlertRecord:
    return AlertRecord(
        alert_id=int(row.id),
        pipeline=row.pipeline,
        run_id=row.run_id,
        step=row.step,
        account=row.account,
        level=row.level,
        kind=row.kind,
        at=row.at,
        elapsed_s=row.elapsed_s,
        predicted_s=row.predicted_s,
        bound_s=row.bound_s,
        eta=row.eta,
        text=row.text,
        deliveries=deliveries,
    )


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


class AlertLog:
    """The alert methods of :class:`~planner.history.store.HistoryStore` (a mixin: the
    store provides the URL, the clock and its read and write transactions)."""

    url: str
    _clock: Clock

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def record_alert(
        self,
        *,
        pipeline: str,
        level: str,
        kind: str,
        at: datetime,
        text: str,
        run_id: str | None = None,
        step: str | None = None,
        account: str | None = None,
        elapsed_s: float | None = None,
        predicted_s: float | None = None,
        bound_s: float | None = None,
        eta: datetime | None = None,
        sinks: Sequence[str] = (),
    ) -> int:
        """Store an alert, and a ``pending`` delivery for each sink label in ``sinks``,
        in one transaction; returns the alert's id."""
        values = {
            "pipeline": pipeline,
            "run_id": run_id,
            "step": step,
            "account": account,
            "level": level,
            "kind": kind,
            "at": ensure_utc(at),
            "elapsed_s": _opt_float(elapsed_s),
            "predicted_s": _opt_float(predicted_s),
            "bound_s": _opt_float(bound_s),
            "eta": ensure_utc(eta) if eta is not None else None,
            "text": text,
        }
        with self._write() as conn:
            return insert_alert(conn, values, sinks, self._clock.now())

    def record_delivery(
        self,
        alert_id: int,
        sink: str,
        *,
        status: DeliveryStatus | str = DeliveryStatus.PENDING,
        attempts: int = 0,
        last_error: str | None = None,
        sent_at: datetime | None = None,
    ) -> int:
        """Add a delivery of a stored alert to the sink labelled ``sink``; returns its id
        (StoreError when the alert is unknown or that delivery exists)."""
        try:
            with self._write() as conn:
                return insert_delivery(
                    conn, alert_id, sink, status, attempts, last_error, self._clock.now(), sent_at
                )
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise StoreError(
                    self.url, f"alert {alert_id}: no such alert, or {sink!r} is recorded already"
                ) from exc
            raise

    def update_delivery(
        self,
        alert_id: int,
        sink: str,
        *,
        status: DeliveryStatus | str,
        attempts: int,
        last_error: str | None = None,
        sent_at: datetime | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Record a try of a delivery (at ``now``, default the store's clock);
        ``last_error`` is kept as one line. A delivery already ``sent`` is left as it is.
        False when nothing changed."""
        stamp = ensure_utc(now) if now is not None else self._clock.now()
        with self._write() as conn:
            return set_delivery(conn, alert_id, sink, status, attempts, last_error, stamp, sent_at)

    def alerts(
        self,
        pipeline: str | None = None,
        since: datetime | None = None,
        run_id: str | None = None,
    ) -> list[AlertRecord]:
        """Stored alerts fired at or after ``since`` (of one pipeline, of one run), oldest
        first, each with its deliveries."""
        with self._read() as conn:
            return list_alerts(conn, pipeline=pipeline, since=since, run_id=run_id)

    def pending_deliveries(self, pipeline: str | None = None) -> list[AlertRecord]:
        """Alerts with a delivery ``pending`` or ``failed``, oldest first, each carrying
        only those deliveries (what a retry should send again)."""
        with self._read() as conn:
            return list_unsent(conn, pipeline)
