"""Alert fixtures: a history per backend, and real servers on 127.0.0.1.

``http_hook``: a real HTTP server (http.server in a thread) that records every request
and answers with the status the test sets. ``smtp_server``: a real SMTP server
(aiosmtpd) with AUTH LOGIN/PLAIN and no TLS, which records every message it accepts.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from planner.config import Pipeline
from planner.history import HistoryStore
from planner.monitoring import Alert

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_alert(**changes: Any) -> Alert:
    values: dict[str, Any] = {
        "level": "warning",
        "kind": "task_late",
        "pipeline": "etl",
        "run_id": "r1",
        "step": "1",
        "account": "acct-7",
        "elapsed_s": 120.0,
        "predicted_s": 60.0,
        "bound_s": 100.0,
        "eta": T0,
        "text": "task 1:acct-7 runs 120s, bound 100s",
        "at": T0,
    }
    values.update(changes)
    return Alert(**values)


def make_pipeline(tmp_path: Path, **alerts: Any) -> Pipeline:
    """A pipeline as if read from ``tmp_path/pipeline.yaml`` (its state dir beside it)."""
    pipeline = Pipeline.model_validate(
        {
            "name": "etl",
            "state_dir": str(tmp_path / "state"),
            "alerts": alerts,
            "steps": [{"id": "1", "command": ["true"]}],
        }
    )
    return pipeline.model_copy(update={"source": tmp_path / "pipeline.yaml"})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    url: str = request.getfixturevalue("pg_fresh_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[HistoryStore]:
    history = HistoryStore(store_url)
    yield history
    history.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[HistoryStore]:
    history = HistoryStore(f"sqlite:///{tmp_path / 'state' / 'history.db'}")
    yield history
    history.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers are local: a proxy in the environment must not get in the way."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpHook:
    """A running HTTP server: ``url``, the ``requests`` it got, the ``status`` it answers."""

    port: int
    requests: list[Request] = field(default_factory=list)
    status: int = 200
    reason: str | None = None
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None
    got: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                hook.requests.append(Request(self.path, dict(self.headers.items()), body))
                self.send_response(hook.status, hook.reason)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                hook.got.set()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def http_hook() -> Iterator[HttpHook]:
    """A real HTTP server on 127.0.0.1 (started; ``stop()``/``start()`` to take it down
    and bring it back on the same port)."""
    hook = HttpHook(free_port())
    hook.start()
    yield hook
    hook.stop()


@pytest.fixture
def down_hook() -> Iterator[HttpHook]:
    """An HTTP server not started yet: its port refuses connections until ``start()``."""
    hook = HttpHook(free_port())
    yield hook
    hook.stop()


@dataclass
class Mailbox:
    port: int
    messages: list[Any] = field(default_factory=list)  # aiosmtpd envelopes
    logins: list[str] = field(default_factory=list)
    got: threading.Event = field(default_factory=threading.Event)


SMTP_USER = "planner"
SMTP_PASSWORD = "hunter2-very-secret"


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd): no TLS, login required; the password
    is :data:`SMTP_PASSWORD`, and a wrong one is refused with a reply that echoes it."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    box = Mailbox(free_port())

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            box.messages.append(envelope)
            box.got.set()
            return "250 Message accepted for delivery"

    def authenticator(
        _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False)
        user, password = data.login.decode(), data.password.decode()
        if user == SMTP_USER and password == SMTP_PASSWORD:
            box.logins.append(user)
            return AuthResult(success=True)
        # A careless server that echoes what it got: the error must still be masked.
        return AuthResult(success=False, handled=False, message=f"535 bad password {password}")

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=box.port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield box
    controller.stop()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; returns whether it held."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
