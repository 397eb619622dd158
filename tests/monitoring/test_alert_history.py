"""Alerts in the history: the same contract on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from planner.errors import StoreError
from planner.history import DeliveryStatus, HistoryStore
from planner.monitoring import Alert

from .conftest import T0, make_alert


def _record(store: HistoryStore, alert: Alert, sinks: tuple[str, ...] = ()) -> int:
    return store.record_alert(
        pipeline=alert.pipeline,
        level=alert.level,
        kind=alert.kind,
        at=alert.at,
        text=alert.text,
        run_id=alert.run_id,
        step=alert.step,
        account=alert.account,
        elapsed_s=alert.elapsed_s,
        predicted_s=alert.predicted_s,
        bound_s=alert.bound_s,
        eta=alert.eta,
        sinks=sinks,
    )


def test_an_alert_is_stored_with_a_pending_delivery_per_sink(store: HistoryStore) -> None:
    alert = make_alert(eta=T0 + timedelta(minutes=5))
    alert_id = _record(store, alert, ("log /x", "webhook http://h/p"))
    (record,) = store.alerts()
    assert record.alert_id == alert_id
    assert Alert.from_record(record) == alert  # every field comes back, times in UTC
    assert record.eta is not None and record.eta.utcoffset() == timedelta(0)
    assert [(d.sink, d.status, d.attempts) for d in record.deliveries] == [
        ("log /x", "pending", 0),
        ("webhook http://h/p", "pending", 0),
    ]
    assert [r.alert_id for r in store.pending_deliveries("etl")] == [alert_id]


def test_deliveries_are_updated_and_a_sent_one_stays_sent(store: HistoryStore) -> None:
    alert_id = _record(store, make_alert(), ("a", "b"))
    assert store.update_delivery(
        alert_id, "a", status=DeliveryStatus.FAILED, attempts=1, last_error="refused\nline 2"
    )
    assert store.update_delivery(alert_id, "a", status="sent", attempts=2, sent_at=T0)
    # Another process's late failure must not turn a success back into a failure.
    assert not store.update_delivery(alert_id, "a", status="failed", attempts=3, last_error="x")
    assert not store.update_delivery(alert_id, "nope", status="sent", attempts=1)
    store.update_delivery(alert_id, "b", status="failed", attempts=4, last_error="boom " * 200)
    (record,) = store.alerts()
    a, b = record.deliveries
    assert (a.status, a.attempts, a.last_error, a.sent_at) == ("sent", 2, None, T0)
    assert (b.status, b.attempts, b.sent_at) == ("failed", 4, None)
    assert b.last_error is not None and len(b.last_error) <= 500 and "\n" not in b.last_error
    (pending,) = store.pending_deliveries()
    assert [d.sink for d in pending.deliveries] == ["b"]  # only what is still to send
    with pytest.raises(ValueError, match="unknown delivery status"):
        store.update_delivery(alert_id, "b", status="lost", attempts=1)


def test_record_delivery_adds_one_and_refuses_a_duplicate(store: HistoryStore) -> None:
    alert_id = _record(store, make_alert())
    delivery_id = store.record_delivery(alert_id, "command notify")
    assert delivery_id > 0
    with pytest.raises(StoreError, match="recorded already"):
        store.record_delivery(alert_id, "command notify")
    (record,) = store.alerts()
    assert [d.delivery_id for d in record.deliveries] == [delivery_id]


def test_alerts_are_filtered_by_pipeline_time_and_run(store: HistoryStore) -> None:
    first = _record(store, make_alert(at=T0, run_id="r1"))
    second = _record(store, make_alert(at=T0 + timedelta(hours=1), run_id="r2"))
    other = _record(store, make_alert(pipeline="other", at=T0 + timedelta(hours=2)))
    assert [a.alert_id for a in store.alerts()] == [first, second, other]  # oldest first
    assert [a.alert_id for a in store.alerts("etl")] == [first, second]
    assert [a.alert_id for a in store.alerts(since=T0 + timedelta(minutes=30))] == [
        second,
        other,
    ]
    assert [a.alert_id for a in store.alerts(run_id="r2")] == [second]
    assert store.pending_deliveries() == []  # no sinks: nothing to send
