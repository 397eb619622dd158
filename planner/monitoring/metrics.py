"""Prometheus metrics read from the history at scrape time.

:class:`HistoryCollector` is a custom ``prometheus_client`` collector: every scrape reads
the history store (a few grouped SQL queries, the stored alerts, and the last runs' plans),
so any process that can open the database can serve the metrics, and a restart loses
nothing. :func:`serve_metrics` serves it over HTTP on a private registry.

Families (labels in brackets):

- ``planner_runs_total`` [pipeline, status]: every stored run;
- ``planner_run_duration_seconds`` [pipeline]: histogram of the runs that finished in the
  last 7 days (``abandoned`` runs left out: their end is when someone noticed);
- ``planner_task_duration_seconds`` [pipeline, step]: histogram of the finished attempts
  (not skipped) started in the last 7 days;
- ``planner_active_runs`` [pipeline], ``planner_active_tasks`` [pipeline]: ``running`` now;
- ``planner_task_failures_total`` [pipeline, step, error_class]: failed or timed-out
  attempts (class ``unknown`` when none was stored);
- ``planner_task_retries_total`` [pipeline, step]: attempts after the first;
- ``planner_alerts_total`` [pipeline, level]: stored alerts;
- ``planner_prediction_mdape`` and ``planner_bound_coverage`` [pipeline]: median absolute
  percentage error of the predictions and share of tasks within their bound, over the last
  10 runs that stored a plan (absent while no planned task finished);
- ``planner_next_start_timestamp_seconds`` [pipeline]: unix time of the next start the
  scheduler daemon decided (its newest ``scheduled`` decision; absent without one);
- ``planner_leader`` [pipeline, host, owner]: 1 for the daemon that schedules the
  pipeline (its ``leaders`` row, while not expired; absent otherwise);
- ``planner_history_up``: 1 when the last scrape read the history, 0 when it failed.

The duration histograms cover a sliding window (they can go down: read them with
``histogram_quantile``, not ``rate()``); the ``_total`` families count the whole history.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from planner.clock import SYSTEM_CLOCK, Clock
from planner.errors import PlannerError, UsageError
from planner.history.stats import Buckets
from planner.monitoring.drift import prediction_quality
from planner.status import NEXT_START_KINDS

if TYPE_CHECKING:
    import threading
    from wsgiref.simple_server import WSGIServer

    from planner.history import HistoryStore

__all__ = [
    "DURATION_BUCKETS",
    "QUALITY_RUNS",
    "WINDOW",
    "HistoryCollector",
    "MetricsServer",
    "serve_metrics",
]

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the duration buckets: a second to two days.
DURATION_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0, 2 * 86400.0,
)  # fmt: skip
#: The window of the duration histograms.
WINDOW = timedelta(days=7)
#: The last runs with a stored plan that judge the predictions.
QUALITY_RUNS = 10
#: The kind of the decisions that carry a pipeline's next start (see planner/service/status.py).


class HistoryCollector(Collector):
    """The metrics of ``pipelines`` (all pipelines in the history when ``None``), read
    from ``store`` on every :meth:`collect`."""

    def __init__(
        self,
        store: HistoryStore,
        pipelines: Sequence[str] | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        window: timedelta = WINDOW,
    ) -> None:
        self.store = store
        self.pipelines = None if pipelines is None else tuple(dict.fromkeys(pipelines))
        self.clock = clock
        self.window = window

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "planner_history_up", "1 when the last scrape read the history, 0 when it failed"
        )
        try:
            families = self._families(self.clock.now())
        except PlannerError as exc:  # StoreError: the database is away; say so, stay up
            log.warning("metrics: cannot read the history: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _families(self, now: datetime) -> list[Metric]:
        since = now - self.window
        stats = self.store.history_stats(self.pipelines, since, DURATION_BUCKETS)
        pipelines = self.pipelines if self.pipelines is not None else sorted(stats.pipelines)
        families: list[Metric] = [
            _counter(
                "planner_runs",
                "Runs stored in the history, by final (or current) status",
                ["pipeline", "status"],
                stats.runs_by_status,
            ),
            _histogram(
                "planner_run_duration_seconds",
                "Duration of the runs that finished in the window (default 7 days)",
                ["pipeline"],
                stats.run_durations,
            ),
            _histogram(
                "planner_task_duration_seconds",
                "Duration of the task attempts started in the window (default 7 days)",
                ["pipeline", "step"],
                stats.task_durations,
            ),
            _gauge(
                "planner_active_runs",
                "Runs running now",
                ["pipeline"],
                {(p,): float(stats.active_runs.get(p, 0)) for p in pipelines},
            ),
            _gauge(
                "planner_active_tasks",
                "Task attempts running now",
                ["pipeline"],
                {(p,): float(stats.active_tasks.get(p, 0)) for p in pipelines},
            ),
            _counter(
                "planner_task_failures",
                "Failed or timed-out task attempts, by error class",
                ["pipeline", "step", "error_class"],
                stats.failures,
            ),
            _counter(
                "planner_task_retries",
                "Task attempts after the first one",
                ["pipeline", "step"],
                stats.retries,
            ),
            _counter(
                "planner_alerts",
                "Alerts stored in the history, by level",
                ["pipeline", "level"],
                self._alerts(pipelines),
            ),
        ]
        families.extend(self._quality(pipelines))
        families.extend(self._scheduler(now))
        return families

    def _alerts(self, pipelines: Sequence[str]) -> dict[tuple[str, ...], float]:
        counts: dict[tuple[str, ...], float] = defaultdict(float)
        if self.pipelines is None:
            records = self.store.alerts()
        else:
            records = [a for p in pipelines for a in self.store.alerts(pipeline=p)]
        for alert in records:
            counts[(alert.pipeline, alert.level)] += 1.0
        return counts

    def _scheduler(self, now: datetime) -> list[Metric]:
        """The next start the daemon decided and who leads, per pipeline (all of the
        history's pipelines that have them when no pipelines were given)."""
        next_start = GaugeMetricFamily(
            "planner_next_start_timestamp_seconds",
            "Unix time of the next start the scheduler daemon decided",
            labels=["pipeline"],
        )
        leader = GaugeMetricFamily(
            "planner_leader",
            "1 for the scheduler daemon that leads the pipeline (its row not expired)",
            labels=["pipeline", "host", "owner"],
        )
        for name, decision in self.store.last_decisions(self.pipelines, NEXT_START_KINDS).items():
            if decision.next_start is not None:
                next_start.add_metric([name], decision.next_start.timestamp())
        lease_now = self.store.lease_time(now)  # the server's time on PostgreSQL
        for name, holder in self.store.leaders(self.pipelines).items():
            if holder.expires_at > lease_now:
                leader.add_metric([name, holder.host, holder.owner_id], 1.0)
        return [next_start, leader]

    def _quality(self, pipelines: Sequence[str]) -> list[Metric]:
        # Imported here: the service layer imports this package, not the other way round.
        from planner.monitoring.drift import planned_vs_actual

        mdape = GaugeMetricFamily(
            "planner_prediction_mdape",
            f"Median absolute percentage error (ratio) of the task predictions over the "
            f"last {QUALITY_RUNS} runs with a stored plan",
            labels=["pipeline"],
        )
        coverage = GaugeMetricFamily(
            "planner_bound_coverage",
            f"Share of tasks that finished within their predicted bound over the last "
            f"{QUALITY_RUNS} runs with a stored plan",
            labels=["pipeline"],
        )
        for pipeline in pipelines:
            quality = prediction_quality(planned_vs_actual(self.store, pipeline, QUALITY_RUNS))
            if quality.mdape is not None:
                mdape.add_metric([pipeline], quality.mdape)
            if quality.coverage is not None:
                coverage.add_metric([pipeline], quality.coverage)
        return [mdape, coverage]


def _counter(
    name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]
) -> Metric:
    return _filled(CounterMetricFamily(name, doc, labels=labels), values)


def _gauge(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]) -> Metric:
    return _filled(GaugeMetricFamily(name, doc, labels=labels), values)


def _filled(
    family: CounterMetricFamily | GaugeMetricFamily, values: dict[tuple[str, ...], float]
) -> Metric:
    for key in sorted(values):
        family.add_metric(list(key), values[key])
    return family


def _histogram(
    name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], Buckets]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    bounds = [str(float(b)) for b in DURATION_BUCKETS] + ["+Inf"]
    for key in sorted(values):
        buckets = values[key]
        family.add_metric(list(key), list(zip(bounds, buckets.counts, strict=True)), buckets.total)
    return family


@dataclass
class MetricsServer:
    """A running metrics endpoint: ``http://host:port/metrics``; :meth:`close` stops it."""

    host: str
    port: int
    registry: CollectorRegistry
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5.0)
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def serve_metrics(
    store: HistoryStore,
    host: str,
    port: int,
    pipelines: Sequence[str] | None = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> MetricsServer:
    """Serve the metrics of ``pipelines`` (all when ``None``) at ``http://host:port/metrics``
    on a thread, from a private registry; port 0 picks a free port (see ``.port``).
    UsageError when ``host:port`` cannot be bound."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(HistoryCollector(store, pipelines, clock=clock))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except (OSError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"{host}:{port}", f"cannot serve metrics: {reason}") from None
    return MetricsServer(host, int(server.server_port), registry, server, thread)
