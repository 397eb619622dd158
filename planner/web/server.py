"""The dashboard served by uvicorn on a thread of its own: ``planner dashboard`` waits on
it in the foreground, ``planner daemon --dashboard`` keeps it for its lifetime.

:func:`serve_dashboard` checks the token rule (:func:`planner.web.auth.check_binding`),
binds the socket itself (so a port in use is a ``UsageError`` at once, and port 0 picks
a free port that ``.port`` and ``.url`` then tell), starts uvicorn on a daemon thread and
returns once it answers. :meth:`DashboardServer.close` ends the live streams, stops
uvicorn (open connections get a few seconds) and joins the thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from planner.clock import SYSTEM_CLOCK, Clock
from planner.errors import UsageError
from planner.web.auth import check_binding

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from planner.service.instance import Instance
    from planner.web.context import DashboardContext

__all__ = ["DashboardServer", "serve_dashboard"]

#: How long open connections may take to finish when the server stops.
GRACEFUL_S = 3.0
_START_TIMEOUT_S = 15.0


@dataclass
class DashboardServer:
    """A running dashboard at :attr:`url`; :meth:`close` stops it (idempotent)."""

    host: str
    port: int
    app: Starlette
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        ctx: DashboardContext = self.app.state.dashboard
        ctx.stopping.set()  # live streams end at their next beat
        self._server.should_exit = True
        self._thread.join(timeout=GRACEFUL_S + 5.0)

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        raise UsageError(f"{host}:{port}", f"cannot serve the dashboard: {exc}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise UsageError(f"{host}:{port}", f"cannot serve the dashboard: {reason}") from None
    sock.set_inheritable(False)  # children of the daemon must not hold the port
    return sock


def serve_dashboard(
    source: Instance | Callable[[], Instance] | str,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    models_dir: Path | None = None,
    token: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
    live_interval_s: float = 1.5,
) -> DashboardServer:
    """Serve the dashboard of ``source`` (see :func:`planner.web.app.create_app`) at
    ``http://host:port/`` on a thread; ``UsageError`` off loopback without a token, or
    when the address cannot be bound."""
    import uvicorn

    from planner.web.app import create_app

    check_binding(host, token)
    sock = _bind(host, port)
    app = create_app(source, models_dir, token=token, clock=clock, live_interval_s=live_interval_s)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(GRACEFUL_S),
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="planner-dashboard", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise UsageError(f"{host}:{port}", "the dashboard did not start")
        time.sleep(0.01)
    bound = sock.getsockname()
    return DashboardServer(host, int(bound[1]), app, server, thread)
