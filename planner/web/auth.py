"""The token rule of the dashboard.

- Bound to a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``) without a token,
  the dashboard is open: only this machine reaches it.
- Bound to any other address it refuses to start without a token
  (:func:`check_binding`: ``UsageError``, exit 2).
- With a token, EVERY request needs it, loopback clients included (a reverse proxy or
  another user on this machine is a loopback client too): the header
  ``Authorization: Bearer <token>``, or the session cookie that ``POST /login`` sets (its
  value is an HMAC of the token, not the token; ``HttpOnly; SameSite=Strict``). Both are
  compared in constant time (:func:`hmac.compare_digest`). Without either the answer is
  401: a small login form for a browser, ``{"error": ...}`` for anything else.

Open without the token: ``/healthz`` (says "ok", nothing else), ``/login`` itself, and
``/static/...``: the stylesheet and scripts shipped in the package, the same for
everyone and holding no data (the login form uses the stylesheet). Every figure of the
history is behind the token: pages, ``/api/...``, ``/api/events`` and ``/metrics``.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from planner.errors import UsageError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "OPEN_PATHS",
    "TOKEN_ENV",
    "TokenGuard",
    "check_binding",
    "check_token",
    "is_loopback",
    "session_value",
]

#: The environment variable that may hold the token (never logged).
TOKEN_ENV = "PLANNER_DASHBOARD_TOKEN"
#: The name of the session cookie.
COOKIE = "planner_session"
#: Paths answered without the token (and everything under ``/static/``).
OPEN_PATHS = frozenset({"/healthz", "/login"})
_STATIC = "/static/"
_MAX_FORM = 4096  # bytes of a login form


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` is reachable from this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything


def check_token(token: str | None, flag: str = "--token") -> str | None:
    """``token`` as given (``None``: no token); ``UsageError`` for an empty one or one
    with spaces or control characters (it must fit in a header)."""
    if token is None:
        return None
    if not token or not token.isprintable() or any(c.isspace() for c in token):
        raise UsageError(flag, "must be a non-empty string without spaces")
    return token


def check_binding(host: str, token: str | None, *, token_flag: str = "--token") -> None:
    """Refuse (``UsageError``, exit 2) to serve off loopback without a token
    (``token_flag``: the option that gives it, for the message)."""
    check_token(token, token_flag)
    if token is None and not is_loopback(host):
        raise UsageError(
            f"dashboard on {host}",
            "without a token the dashboard serves on loopback only (127.0.0.1, ::1, "
            f"localhost): give {token_flag} T (or ${TOKEN_ENV}) to serve on {host}",
        )


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: an HMAC of a fixed text keyed by it."""
    return hmac.new(token.encode(), b"planner-dashboard-session", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out.setdefault(name, value)
    return out


def _safe_next(value: str | None) -> str:
    """A local path to go back to after logging in (``/`` for anything else)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def login_page(next_path: str = "/", *, failed: bool = False) -> str:
    """The login form (no template: it must render before anything else works)."""
    note = '<p class="error" role="alert">Wrong token.</p>' if failed else ""
    target = html.escape(_safe_next(next_path), quote=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>planner: log in</title>
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body><main class="login">
<h1>planner dashboard</h1>
<p>This dashboard needs its access token.</p>{note}
<form method="post" action="/login">
<input type="hidden" name="next" value="{target}">
<label>Token <input type="password" name="token" autocomplete="current-password"
 autofocus required></label>
<button type="submit">Log in</button>
</form></main></body></html>
"""


class TokenGuard:
    """ASGI middleware: the rule of the module (``token=None``: everything is open) and
    the login form at ``/login``; it also adds ``nosniff``, ``DENY`` framing and a
    same-origin referrer policy to every answer."""

    def __init__(self, app: ASGIApp, token: str | None = None) -> None:
        self.app = app
        self.token = check_token(token)
        self.session = session_value(token) if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        path = scope.get("path", "")
        if path == "/login":
            await self._login(scope, receive, send)
        elif self._open(path) or self.allowed(scope):
            await self.app(scope, receive, send)
        else:
            await self._refuse(scope, send)

    def _open(self, path: str) -> bool:
        return self.token is None or path in OPEN_PATHS or path.startswith(_STATIC)

    def allowed(self, scope: Scope) -> bool:
        """Whether the request carries the token (header) or the session (cookie)."""
        assert self.token is not None and self.session is not None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(given.strip(), self.token):
            return True
        cookie = _cookies(headers.get("cookie", "")).get(COOKIE)
        return cookie is not None and _same(cookie, self.session)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
        path = scope.get("path", "/")
        query = scope.get("query_string", b"").decode("latin-1")
        if "text/html" in accept:
            here = path + (f"?{query}" if query else "")
            body = login_page(here).encode()
            kind = b"text/html; charset=utf-8"
        else:
            body = b'{"error": "unauthorized: this dashboard needs its token"}'
            kind = b"application/json"
        await _answer(send, 401, body, kind, [(b"www-authenticate", b'Bearer realm="planner"')])

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        next_path = _safe_next((query.get("next") or ["/"])[0])
        if self.token is None:  # nothing to log in to
            await _redirect(send, next_path)
        elif method in ("GET", "HEAD"):
            await _answer(send, 200, login_page(next_path).encode(), b"text/html; charset=utf-8")
        elif method != "POST":
            await _answer(
                send, 405, b"method not allowed", b"text/plain", [(b"allow", b"GET, POST")]
            )
        else:
            form = parse_qs((await _body(receive)).decode("utf-8", "replace"))
            given = (form.get("token") or [""])[0]
            next_path = _safe_next((form.get("next") or [next_path])[0])
            if given and _same(given, self.token):
                assert self.session is not None
                cookie = f"{COOKIE}={self.session}; Path=/; HttpOnly; SameSite=Strict"
                if scope.get("scheme") == "https":  # behind a TLS proxy that says so
                    cookie += "; Secure"
                await _redirect(send, next_path, [(b"set-cookie", cookie.encode())])
            else:
                page = login_page(next_path, failed=True).encode()
                await _answer(send, 401, page, b"text/html; charset=utf-8")


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= _MAX_FORM:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    kind: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    extra = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    extra += [(b"cache-control", b"no-store"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": extra})
    await send({"type": "http.response.body", "body": body})


async def _redirect(
    send: Send, location: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    where = quote(location, safe="/?&=%#:;,+-_.~")
    await _answer(send, 303, b"", b"text/plain", [(b"location", where.encode()), *(headers or [])])


def _with_headers(send: Send) -> Send:
    """``send`` that adds the safety headers to the response start."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or [])
            names = {name.lower() for name, _ in headers}
            for name, value in (
                (b"x-content-type-options", b"nosniff"),
                (b"x-frame-options", b"DENY"),
                (b"referrer-policy", b"same-origin"),
            ):
                if name not in names:
                    headers.append((name, value))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
