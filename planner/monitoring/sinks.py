"""Where alerts go: a log file, a webhook, e-mail, a command.

A :class:`Sink` has a ``label`` (how the history names it: no secret in it), a
``min_level`` and one method, :meth:`Sink.send`, which delivers one alert or raises
:class:`DeliveryError` with a one-line reason. Sinks do no retrying and keep no queue:
the dispatcher (:mod:`planner.monitoring.delivery`) calls them from its own thread, one
alert at a time, and retries. Every network or process wait is bounded by the sink's
timeout.

Secrets: an e-mail password is read from the environment variable ``password_env``
names, when an alert is sent, and never kept; header values whose name says they are
secret (token, secret, password, key, authorization, cookie), a URL's password and its
query string are left out of the label and masked in every error text
(:meth:`Sink.redact`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import smtplib
import ssl
import subprocess
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

from planner import defaults
from planner.errors import DeliveryError
from planner.monitoring.alerts import Alert, level_rank

if TYPE_CHECKING:
    from planner.config import AlertSink, Pipeline

__all__ = [
    "SECRET_HEADER",
    "CommandSink",
    "DeliveryError",
    "EmailSink",
    "LogSink",
    "Sink",
    "WebhookSink",
    "build_sinks",
    "sink_from_config",
]

#: Header names whose values are secrets: never in a label, masked in errors.
SECRET_HEADER = re.compile(r"token|secret|password|passwd|key|authorization|cookie", re.I)

_MASK = "***"
_LABEL_CHARS = 200  # the history keeps labels in 255 characters (with a " #2" to spare)
_RESPONSE_BYTES = 65536  # read (and drop) at most this much of a webhook's answer


class Sink(ABC):
    """One destination of alerts."""

    kind: ClassVar[str]

    def __init__(self, *, label: str, min_level: str = defaults.ALERT_SINK_MIN_LEVEL) -> None:
        level_rank(min_level)  # refuses an unknown level
        self.label = label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 3] + "..."
        self.min_level = str(min_level)

    def accepts(self, alert: Alert) -> bool:
        """Whether ``alert`` is at or above this sink's ``min_level``."""
        return alert.rank >= level_rank(self.min_level)

    @abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` once; raises :class:`DeliveryError` when it did not arrive."""

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in an error text or a log line."""
        return ()

    def redact(self, text: str) -> str:
        """``text`` with every secret of this sink masked."""
        for secret in sorted(self.secrets(), key=len, reverse=True):
            if secret:
                text = text.replace(secret, _MASK)
        return text

    def _fail(self, what: str, *extra_secrets: str) -> DeliveryError:
        text = self.redact(" ".join(what.split()))
        for secret in extra_secrets:
            if secret:
                text = text.replace(secret, _MASK)
        return DeliveryError(self.label, text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, min_level={self.min_level!r})"


class LogSink(Sink):
    """Appends each alert's JSON body as one line to a file (its folder is created)."""

    kind = "log"

    def __init__(
        self,
        path: Path,
        *,
        min_level: str = defaults.ALERT_SINK_MIN_LEVEL,
        label: str | None = None,
    ) -> None:
        super().__init__(label=label or f"log {path}", min_level=min_level)
        self.path = Path(path)

    def send(self, alert: Alert) -> None:
        line = json.dumps(alert.body(), sort_keys=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)  # one write of one line: appends do not interleave
        except OSError as exc:
            raise self._fail(f"cannot write {self.path}: {exc.strerror or exc}") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a success: the POST is not sent elsewhere."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class WebhookSink(Sink):
    """POSTs each alert's JSON body to an http(s) URL; any 2xx answer is success."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = defaults.WEBHOOK_SINK_TIMEOUT_S,
        min_level: str = defaults.ALERT_SINK_MIN_LEVEL,
        label: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"a webhook needs an http:// or https:// URL, got {_public(parts)}")
        super().__init__(label=label or f"webhook {_public(parts)}", min_level=min_level)
        self.headers = dict(headers or {})
        # Query values often carry tokens (?key=...); short ones (v=1) would mask noise.
        query = [v for _, v in parse_qsl(parts.query) if len(v) >= 4]
        self._url_secrets = (parts.password or "", parts.query, parts.fragment, *query)
        if parts.username is not None:  # user:password@host: sent as basic authentication
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            basic = base64.b64encode(pair.encode("utf-8")).decode("ascii")
            self.headers.setdefault("Authorization", f"Basic {basic}")
            parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        self.url = urlunsplit(parts)
        self.timeout_s = float(timeout_s)

    def secrets(self) -> tuple[str, ...]:
        found: list[str] = []
        for name, value in self.headers.items():
            if SECRET_HEADER.search(name):
                words = value.split()
                found.append(value)
                if len(words) > 1 and words[0].isalpha():  # "Bearer <token>": the token too
                    found += words[1:]
        found += [*self._url_secrets, unquote(self._url_secrets[0])]
        return tuple(s for s in found if s)

    def send(self, alert: Alert) -> None:
        data = json.dumps(alert.body()).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "planner", **self.headers}
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(request, timeout=self.timeout_s) as response:
                response.read(_RESPONSE_BYTES)
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise self._fail(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise self._fail(_reason(exc.reason, self.timeout_s)) from None
        except (OSError, HTTPException) as exc:  # TimeoutError, reset, bad status line
            raise self._fail(_reason(exc, self.timeout_s)) from None
        if not 200 <= status < 300:
            raise self._fail(f"HTTP {status}")


class EmailSink(Sink):
    """Sends each alert as a plain-text e-mail over SMTP, with optional STARTTLS and
    login. Subject: ``[planner] LEVEL pipeline: text``."""

    kind = "email"

    def __init__(
        self,
        *,
        host: str,
        sender: str,
        to: Sequence[str],
        port: int | None = None,
        starttls: bool = False,
        username: str | None = None,
        password_env: str | None = None,
        timeout_s: float = defaults.EMAIL_SINK_TIMEOUT_S,
        min_level: str = defaults.ALERT_SINK_MIN_LEVEL,
        label: str | None = None,
    ) -> None:
        if not to:
            raise ValueError("an email sink needs at least one address in 'to'")
        if username and not password_env:
            raise ValueError("an email sink with a username needs password_env")
        self.port = int(port) if port is not None else (587 if starttls else 25)
        recipients = ", ".join(to)
        super().__init__(
            label=label or f"email {host}:{self.port} to {recipients}", min_level=min_level
        )
        self.host = host
        self.sender = sender
        self.to = tuple(to)
        self.starttls = bool(starttls)
        self.username = username
        self.password_env = password_env
        self.timeout_s = float(timeout_s)

    def message(self, alert: Alert) -> EmailMessage:
        """The e-mail ``alert`` becomes."""
        message = EmailMessage()
        message["Subject"] = f"[planner] {alert.level.upper()} {alert.pipeline}: {alert.text}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Date"] = format_datetime(alert.at)
        message["Message-ID"] = make_msgid(domain="planner")
        body = alert.body()
        lines = [alert.text, ""]
        lines += [f"{key}: {value}" for key, value in body.items() if value is not None]
        lines += ["", json.dumps(body, indent=2)]
        message.set_content("\n".join(lines) + "\n")
        return message

    def send(self, alert: Alert) -> None:
        password = ""
        if self.username:
            password = os.environ.get(self.password_env or "", "")
            if not password:
                raise self._fail(
                    f"environment variable {self.password_env} is not set: "
                    "it must hold the SMTP password"
                )
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, password)
                refused = smtp.send_message(self.message(alert))
        except smtplib.SMTPResponseException as exc:
            reply = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise self._fail(f"SMTP {exc.smtp_code} {reply}", password) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise self._fail(f"every recipient refused: {', '.join(exc.recipients)}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise self._fail(_reason(exc, self.timeout_s), password) from None
        if refused:
            raise self._fail(f"recipients refused: {', '.join(refused)}")


class CommandSink(Sink):
    """Runs a command (an argument list, no shell) with the alert's JSON on its stdin;
    exit 0 is success. A command still running after its timeout is killed with its
    process group."""

    kind = "command"

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout_s: float = defaults.COMMAND_SINK_TIMEOUT_S,
        min_level: str = defaults.ALERT_SINK_MIN_LEVEL,
        label: str | None = None,
    ) -> None:
        if not command or not command[0]:
            raise ValueError("a command sink needs a command")
        # Arguments may carry secrets (a token on the command line): the label has none.
        super().__init__(label=label or f"command {command[0]}", min_level=min_level)
        self.command = tuple(command)
        self.cwd = cwd
        self.timeout_s = float(timeout_s)

    def send(self, alert: Alert) -> None:
        data = json.dumps(alert.body()).encode("utf-8")
        try:
            proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise self._fail(f"cannot start {self.command[0]}: {exc.strerror or exc}") from None
        try:
            _, err = proc.communicate(input=data, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise self._fail(f"timed out after {self.timeout_s:g}s: killed") from None
        if proc.returncode != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            tail = f": {lines[-1]}" if lines else ""
            raise self._fail(f"exit {proc.returncode}{tail}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command's process group, reap it, and close its pipes (a grandchild that
    keeps them open must not hold the delivery thread)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _public(parts: SplitResult) -> str:
    """A URL as it may be shown: scheme, host, port and path (no user, password, query)."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _reason(exc: object, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"timed out after {timeout_s:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__


def sink_from_config(config: AlertSink, *, state_dir: Path, base_dir: Path | None) -> Sink:
    """The sink a pipeline's ``alerts.sinks`` entry describes. Relative paths are taken
    from ``base_dir`` (the pipeline file's folder), else the working directory."""

    def absolute(path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() or base_dir is None else base_dir / path

    common: dict[str, Any] = {"min_level": config.min_level, "label": config.name}
    if config.kind == "log":
        path = absolute(config.path) if config.path else state_dir / defaults.ALERTS_LOG
        return LogSink(path, **common)
    if config.kind == "webhook":
        assert config.url is not None  # validated
        timeout = config.timeout or defaults.WEBHOOK_SINK_TIMEOUT_S
        return WebhookSink(config.url, headers=config.headers, timeout_s=timeout, **common)
    if config.kind == "email":
        assert config.host is not None and config.sender is not None  # validated
        return EmailSink(
            host=config.host,
            port=config.port,
            starttls=config.starttls,
            username=config.username,
            password_env=config.password_env,
            sender=config.sender,
            to=config.to,
            timeout_s=config.timeout or defaults.EMAIL_SINK_TIMEOUT_S,
            **common,
        )
    assert config.command is not None  # validated
    return CommandSink(
        config.command,
        cwd=base_dir,
        timeout_s=config.timeout or defaults.COMMAND_SINK_TIMEOUT_S,
        **common,
    )


def build_sinks(pipeline: Pipeline) -> list[Sink]:
    """The sinks of ``pipeline``: its ``alerts.sinks``, plus the always-on log sink
    (``<state_dir>/alerts.log``) when none of them is a log. Labels are made unique."""
    base_dir = pipeline.source.resolve().parent if pipeline.source is not None else None
    sinks = [
        sink_from_config(c, state_dir=pipeline.state_dir, base_dir=base_dir)
        for c in pipeline.alerts.sinks
    ]
    if not any(isinstance(s, LogSink) for s in sinks):
        sinks.insert(0, LogSink(pipeline.state_dir / defaults.ALERTS_LOG))
    seen: dict[str, int] = {}
    for sink in sinks:
        count = seen[sink.label] = seen.get(sink.label, 0) + 1
        if count > 1:
            sink.label = f"{sink.label} #{count}"
    return sinks
