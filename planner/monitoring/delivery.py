"""Delivering alerts: stored at once, sent by one background thread, retried.

:meth:`AlertDispatcher.post` writes the alert and a ``pending`` delivery per sink that
takes its level in one transaction, queues the deliveries and returns: it never waits for
a sink and never raises because of one. One thread (started on the first post) sends them,
each sink's alerts in the order they were posted, and records every try in the history:
``sent``, or ``failed`` with the number of tries and the last error (one line, secrets
masked). A sink that fails waits 1 s, 2 s, 4 s... (at most 60 s) before its next try, for
as long as the process lives; its later alerts wait behind the first, so a sink that is
down is not hammered once per alert and receives them in order when it comes back.

:meth:`AlertDispatcher.close` gives what is still queued a bounded time (10 s by default)
and returns a :class:`DeliveryReport`; what was not delivered stays in the history as
``failed`` (tried) or ``pending`` (never tried), and :meth:`AlertDispatcher.retry_pending`
(the next run, the daemon) sends it again. Delivery is at least once: a send that
succeeded just as ``close`` gave up may be sent again by a later retry.

Times stored come from the clock; backoff is measured on ``clock.monotonic()`` (a
:class:`~planner.clock.FakeClock` moved forward makes a retry due), and ``close`` bounds
real waiting (``time.monotonic()``), whatever the clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from planner import defaults
from planner.clock import SYSTEM_CLOCK, Clock
from planner.errors import StoreError
from planner.history.records import DeliveryStatus
from planner.monitoring.alerts import Alert
from planner.monitoring.sinks import DeliveryError, Sink, build_sinks

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.history import HistoryStore

__all__ = ["AlertDispatcher", "DeliveryReport", "backoff_s"]

log = logging.getLogger(__name__)

_POLL_S = 0.5  # longest sleep of the thread while a retry is due (a FakeClock may move)


def backoff_s(
    failures: int,
    base_s: float = defaults.DELIVERY_BACKOFF_BASE_S,
    cap_s: float = defaults.DELIVERY_BACKOFF_CAP_S,
) -> float:
    """Seconds to wait after ``failures`` failures in a row: 1, 2, 4, ... capped at 60."""
    if failures <= 0:
        return 0.0
    return float(min(cap_s, base_s * 2 ** min(failures - 1, 32)))


@dataclass(frozen=True)
class DeliveryReport:
    """What :meth:`AlertDispatcher.close` leaves behind.

    ``sent``: deliveries that arrived during this dispatcher's life; ``failed``: tried and
    still failing at the end; ``pending``: never tried. ``errors`` has one line per
    undelivered delivery: ``<sink>: <last error> (<n> tries)``.
    """

    sent: int
    failed: int
    pending: int
    errors: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether every delivery arrived."""
        return self.failed == 0 and self.pending == 0


@dataclass
class _Delivery:
    alert: Alert
    alert_id: int | None  # None: the history could not record the alert
    attempts: int = 0
    last_error: str | None = None


@dataclass
class _SinkQueue:
    sink: Sink
    waiting: deque[_Delivery] = field(default_factory=deque)
    failures: int = 0  # in a row
    due: float = 0.0  # clock.monotonic() at which the head may be tried


class AlertDispatcher:
    """Stores alerts and delivers them to the sinks of one pipeline.

    ``sinks`` default: :func:`~planner.monitoring.sinks.build_sinks` (the pipeline's
    ``alerts.sinks`` and the always-on log sink). Labels must be unique: the history keys
    each delivery by (alert id, sink label). Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        store: HistoryStore,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sinks: Sequence[Sink] | None = None,
    ) -> None:
        chosen = list(sinks) if sinks is not None else build_sinks(pipeline)
        labels = [s.label for s in chosen]
        if len(set(labels)) != len(labels):
            raise ValueError(f"sink labels must be unique, got {labels}")
        self._pipeline = pipeline.name
        self._store = store
        self._clock = clock
        self._queues = [_SinkQueue(s) for s in chosen]
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy: _SinkQueue | None = None  # the queue whose head is being sent
        self._closed = False  # no more sending; the thread ends
        self._sent = 0
        # Every (alert id, sink label) this dispatcher has queued: a retry never queues one
        # again, even when the history it read a moment ago did not show it sent yet.
        self._known: set[tuple[int, str]] = set()

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """The sinks alerts go to."""
        return tuple(q.sink for q in self._queues)

    def post(self, alert: Alert) -> int:
        """Store ``alert`` (with a pending delivery per sink that takes its level), queue
        its deliveries, and return its id. Never waits for a sink. Raises
        :class:`~planner.errors.StoreError` only when the history cannot be written (the
        sinks are still sent the alert)."""
        targets = [q for q in self._queues if q.sink.accepts(alert)]
        try:
            alert_id: int | None = self._store.record_alert(
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
                sinks=[q.sink.label for q in targets],
            )
        except StoreError:
            self._enqueue([(q, _Delivery(alert, None)) for q in targets])
            raise
        assert alert_id is not None
        self._enqueue([(q, _Delivery(alert, alert_id)) for q in targets])
        return alert_id

    def retry_pending(self) -> int:
        """Queue again the deliveries of this pipeline the history holds as ``pending`` or
        ``failed`` (a previous run's, or this one's that are not queued here); returns how
        many were queued. Deliveries to sinks no longer configured are left as they are."""
        records = self._store.pending_deliveries(self._pipeline)
        by_label = {q.sink.label: q for q in self._queues}
        jobs: list[tuple[_SinkQueue, _Delivery]] = []
        with self._cond:
            if self._closed:
                return 0
            for record in records:
                alert = Alert.from_record(record)
                for row in record.deliveries:
                    target = by_label.get(row.sink)
                    if target is None or (record.alert_id, row.sink) in self._known:
                        continue
                    self._known.add((record.alert_id, row.sink))
                    delivery = _Delivery(alert, record.alert_id, row.attempts, row.last_error)
                    jobs.append((target, delivery))
        self._enqueue(jobs)
        return len(jobs)

    def close(self, timeout_s: float = defaults.ALERT_DELIVERY_GRACE_S) -> DeliveryReport:
        """Give the queued deliveries up to ``timeout_s`` seconds, then stop the thread.

        Returns within about ``timeout_s`` even when a sink hangs (a send under way then
        is abandoned: it is recorded ``failed`` and whatever it does next is not
        recorded), and at once when every sink left is backing off past the deadline.
        Undelivered deliveries stay in the history for :meth:`retry_pending`. Closing
        again only reports again."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while not self._closed and self._has_work() and self._thread_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._nothing_due_within(remaining):
                    break
                self._cond.wait(min(remaining, _POLL_S))
            self._closed = True
            self._cond.notify_all()
            abandoned = self._busy
            report = self._report()
        if abandoned is not None and abandoned.waiting:
            # The thread is still waiting on this sink: it will record nothing more.
            error = f"no answer in the {timeout_s:g}s left when delivery was closed"
            self._record(abandoned.sink, abandoned.waiting[0], error)
        return report

    def __enter__(self) -> AlertDispatcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        labels = ", ".join(q.sink.label for q in self._queues)
        return f"AlertDispatcher({self._pipeline!r}, sinks=[{labels}])"

    # -- the thread ------------------------------------------------------------------

    def _enqueue(self, jobs: list[tuple[_SinkQueue, _Delivery]]) -> None:
        if not jobs:
            return
        with self._cond:
            if self._closed:
                return  # recorded pending: retry_pending sends it later
            for queue, delivery in jobs:
                queue.waiting.append(delivery)
                if delivery.alert_id is not None:
                    self._known.add((delivery.alert_id, queue.sink.label))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"planner-alerts-{self._pipeline}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _has_work(self) -> bool:
        return self._busy is not None or any(q.waiting for q in self._queues)

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _nothing_due_within(self, seconds: float) -> bool:
        """No send under way and every waiting sink backs off past ``seconds``: waiting
        longer would only delay the end."""
        if self._busy is not None:
            return False
        _, wait = self._next()
        return wait is not None and wait > seconds

    def _next(self) -> tuple[_SinkQueue | None, float | None]:
        """The queue whose head is due (earliest first), else the seconds to the next."""
        now = self._clock.monotonic()
        ready = [q for q in self._queues if q.waiting]
        if not ready:
            return None, None
        first = min(ready, key=lambda q: q.due)
        if first.due <= now:
            return first, None
        return None, first.due - now

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    queue, wait = self._next()
                    if queue is not None:
                        break
                    self._cond.wait(None if wait is None else min(wait, _POLL_S))
                self._busy = queue
                delivery = queue.waiting[0]
            error = self._send(queue.sink, delivery.alert)
            with self._cond:
                if self._closed:
                    return  # close() gave up on this send: it stays as recorded
            self._record(queue.sink, delivery, error)
            with self._cond:
                self._busy = None
                if error is None:
                    queue.waiting.popleft()
                    queue.failures = 0
                    queue.due = 0.0
                    self._sent += 1
                else:
                    queue.failures += 1
                    queue.due = self._clock.monotonic() + backoff_s(queue.failures)
                self._cond.notify_all()

    @staticmethod
    def _send(sink: Sink, alert: Alert) -> str | None:
        """``None`` when delivered, else the reason (one line, secrets masked)."""
        try:
            sink.send(alert)
        except DeliveryError as exc:
            return sink.redact(exc.what)
        except Exception as exc:  # a sink's bug must not end the delivery thread
            return sink.redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
        return None

    def _record(self, sink: Sink, delivery: _Delivery, error: str | None) -> None:
        delivery.attempts += 1
        delivery.last_error = error
        if delivery.alert_id is None:
            return
        now = self._clock.now()
        try:
            self._store.update_delivery(
                delivery.alert_id,
                sink.label,
                status=DeliveryStatus.SENT if error is None else DeliveryStatus.FAILED,
                attempts=delivery.attempts,
                last_error=error,
                sent_at=now if error is None else None,
                now=now,
            )
        except Exception as exc:  # the history is down: keep delivering, say so
            log.warning("alert %s to %s: not recorded: %s", delivery.alert_id, sink.label, exc)

    def _report(self) -> DeliveryReport:
        failed = pending = 0
        errors: list[str] = []
        for queue in self._queues:
            for index, delivery in enumerate(queue.waiting):
                if index == 0 and queue is self._busy:
                    failed += 1
                    errors.append(f"{queue.sink.label}: no answer before the end (sending)")
                elif delivery.attempts:
                    failed += 1
                    tries = f"{delivery.attempts} tr{'y' if delivery.attempts == 1 else 'ies'}"
                    errors.append(f"{queue.sink.label}: {delivery.last_error} ({tries})")
                else:
                    pending += 1
                    errors.append(f"{queue.sink.label}: not tried before the end")
        return DeliveryReport(sent=self._sent, failed=failed, pending=pending, errors=tuple(errors))
