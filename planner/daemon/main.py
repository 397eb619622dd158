"""``planner daemon``: the long-running service, its signals and its lifetime.

SIGTERM or SIGINT: start nothing more, let running runs finish within the grace, then
leave them to their leases (they are processes of their own), release the leaderships and
exit 0; a second signal stops waiting at once. SIGHUP: read the pipeline files again (one
that no longer validates keeps its loaded version).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Protocol

from planner.clock import SYSTEM_CLOCK
from planner.daemon.core import Daemon
from planner.daemon.entries import DaemonSettings, load_entries
from planner.daemon.logs import DecisionLogger
from planner.units import format_duration

if TYPE_CHECKING:
    from planner.daemon.timer import Timer
    from planner.service import Instance

__all__ = ["DaemonOptions", "HostedServer", "serve"]


class HostedServer(Protocol):
    """A server the daemon keeps for its lifetime (the dashboard): where it answers, and
    how to stop it."""

    @property
    def url(self) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DaemonOptions:
    """What ``planner daemon`` was asked."""

    files: Sequence[Path]
    db: str | None = None
    models: Path | None = None
    metrics: tuple[str, int] | None = None
    log_json: bool = False
    settings: DaemonSettings = field(default_factory=DaemonSettings)
    #: starts the dashboard on the daemon's instance (``planner daemon --dashboard``):
    #: handed in by the command line, so that the daemon never imports the web front end
    dashboard: Callable[[Instance], HostedServer] | None = None
    #: ``--executor`` (``local`` or ``dask://HOST:PORT``), passed on to each run
    executor: str | None = None


def serve(options: DaemonOptions, *, stream: IO[str] | None = None) -> int:
    """Run the daemon until a signal stops it; returns the exit code (0)."""
    from planner.daemon.children import ChildLauncher
    from planner.daemon.timer import Timer
    from planner.history import LeaseOwner
    from planner.service import Instance

    log = DecisionLogger(stream, as_json=options.log_json)
    entries, db_url = load_entries(
        options.files, SYSTEM_CLOCK.now(), db=options.db, models=options.models
    )
    settings = options.settings
    with Instance.for_pipeline(entries[0].pipeline, db=db_url, models=options.models) as instance:
        owner = LeaseOwner.here()
        daemon = Daemon(
            instance,
            entries,
            owner=owner,
            launcher=ChildLauncher(db_url, executor=options.executor),
            logger=log,
            settings=settings,
        )
        stops = _Signals()
        timer = Timer(
            pipelines=len(entries),
            on_due=daemon.due,
            on_tick=daemon.tick,
            tick_s=settings.tick_s,
            on_retrain=daemon.retrain,
            retrain_cron=settings.retrain_cron,
            timezone=settings.timezone,
            misfire_grace_s=settings.misfire_grace_s,
            on_error=lambda what, exc: _error(log, what, exc),
        )
        daemon.timer = timer
        metrics = None
        if options.metrics is not None:
            from planner.monitoring.metrics import serve_metrics

            host, port = options.metrics
            metrics = serve_metrics(instance.store, host, port, list(daemon.entries))
        try:
            dashboard = options.dashboard(instance) if options.dashboard is not None else None
        except BaseException:
            if metrics is not None:
                metrics.close()
            raise
        names = ", ".join(daemon.entries)
        log.line(
            SYSTEM_CLOCK.now(),
            None,
            "daemon",
            f"daemon pid {owner.pid} on {owner.host} serves {names}; history {instance.url}; "
            f"leadership {format_duration(settings.leader_ttl_s)}; retraining "
            f"{settings.retrain_cron or 'off'}"
            + (f"; metrics {metrics.url}" if metrics else "")
            + (f"; dashboard {dashboard.url}" if dashboard else ""),
            owner=owner.owner_id,
        )
        with stops.installed():
            timer.start()
            try:
                while not stops.stop.is_set():
                    stops.stop.wait(0.5)
                    if stops.reload.is_set():
                        stops.reload.clear()
                        daemon.reload()
                _shutdown(daemon, timer, stops, log)
            finally:
                timer.shutdown()
                daemon.leave()
                daemon.close()
                if dashboard is not None:
                    dashboard.close()
                if metrics is not None:
                    metrics.close()
        log.line(SYSTEM_CLOCK.now(), None, "daemon", "stopped")
    return 0


def _error(log: DecisionLogger, what: str, exc: BaseException | None) -> None:
    log.line(SYSTEM_CLOCK.now(), None, "error", f"{what}: {exc}" if exc else what)


def _shutdown(daemon: Daemon, timer: Timer, stops: _Signals, log: DecisionLogger) -> None:
    daemon.stop()
    timer.pause()
    grace = daemon.settings.stop_grace_s
    running = daemon.running()
    if running:
        log.line(
            SYSTEM_CLOCK.now(),
            None,
            "daemon",
            f"stopping: waiting up to {format_duration(grace)} for run(s) "
            f"{', '.join(running.values())} (a second signal stops at once)",
        )
    deadline = time.monotonic() + grace
    while daemon.running() and time.monotonic() < deadline and stops.count < 2:
        time.sleep(0.1)
    for name, run_id in daemon.running().items():
        log.line(
            SYSTEM_CLOCK.now(),
            name,
            "daemon",
            f"leaving run {run_id} running under its own lease",
            run_id=run_id,
        )
    daemon.leave()
    daemon.release()


class _Signals:
    """SIGTERM/SIGINT count stops; SIGHUP asks for a reload."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.count = 0

    def _on_stop(self, _signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        self.stop.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload.set()

    def installed(self) -> _Installed:
        return _Installed(self)


class _Installed:
    def __init__(self, signals: _Signals) -> None:
        self._signals = signals
        self._old: dict[int, object] = {}

    def __enter__(self) -> None:
        for sig, handler in (
            (signal.SIGTERM, self._signals._on_stop),
            (signal.SIGINT, self._signals._on_stop),
            (signal.SIGHUP, self._signals._on_hup),
        ):
            self._old[sig] = signal.signal(sig, handler)

    def __exit__(self, *_exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
