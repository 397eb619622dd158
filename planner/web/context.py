"""What every route of the dashboard reads: the instance, the clock, the settings.

:func:`create_app <planner.web.app.create_app>` puts one :class:`DashboardContext` in
``app.state.dashboard``; a route gets it with :func:`context` and calls the service with
``ctx.instance()`` and ``ctx.now()``. The instance is opened once, on first use (or at
start-up), and shared by every request (the history store is safe across threads); one
handed in already open is borrowed and left open at shutdown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from planner.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from planner.service.instance import Instance

__all__ = ["DashboardContext", "context"]


@dataclass
class DashboardContext:
    """The instance behind the dashboard (opened by ``open_instance`` on first use), its
    clock, whether a token guards it, and how often live updates are sent."""

    open_instance: Callable[[], Instance]
    clock: Clock = SYSTEM_CLOCK
    guarded: bool = False
    live_interval_s: float = 1.5
    owns_instance: bool = True
    #: set when the server is stopping: live streams end at their next beat
    stopping: threading.Event = field(default_factory=threading.Event)
    _instance: Instance | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def instance(self) -> Instance:
        """The shared instance (opened on first use)."""
        with self._lock:
            if self._instance is None:
                self._instance = self.open_instance()
            return self._instance

    def now(self) -> datetime:
        return self.clock.now()

    def cached(self, key: str, max_age_s: float, build: Callable[[], Any]) -> Any:
        """``build()``, or its answer of less than ``max_age_s`` ago: the live stream's
        document is read once per beat however many browsers follow it."""
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < max_age_s:
                return hit[1]
            value = build()
            self._cache[key] = (time.monotonic(), value)
            return value

    def close(self) -> None:
        """Close the instance if this context opened it (idempotent)."""
        with self._lock:
            instance, self._instance = self._instance, None
        if instance is not None and self.owns_instance:
            instance.close()


def context(request: HTTPConnection) -> DashboardContext:
    """The dashboard context of the app serving ``request``."""
    ctx: DashboardContext = request.app.state.dashboard
    return ctx
