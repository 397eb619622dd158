"""Each sink against the real thing: an HTTP server, an SMTP server, a process, a file."""

from __future__ import annotations

import json
import socket
import sys
import time
from email import message_from_bytes
from pathlib import Path

import pytest

from planner.config import AlertSink
from planner.monitoring import (
    BODY_KEYS,
    CommandSink,
    DeliveryError,
    EmailSink,
    LogSink,
    WebhookSink,
    build_sinks,
)
from planner.monitoring.sinks import sink_from_config

from .conftest import (
    SMTP_PASSWORD,
    SMTP_USER,
    HttpHook,
    Mailbox,
    free_port,
    make_alert,
    make_pipeline,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"  # the test SMTP server
)


def test_webhook_posts_the_alert_json(http_hook: HttpHook) -> None:
    sink = WebhookSink(http_hook.url, headers={"X-Team": "ops"})
    alert = make_alert()
    sink.send(alert)
    (request,) = http_hook.requests
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Team"] == "ops"
    body = json.loads(request.body)
    assert list(body) == list(BODY_KEYS)
    assert body == alert.body()
    assert body["text"] == alert.text  # what Slack shows
    assert body["eta"] == "2026-03-01T12:00:00+00:00"


@pytest.mark.parametrize("status", [201, 204])
def test_any_2xx_is_success(http_hook: HttpHook, status: int) -> None:
    http_hook.status = status
    WebhookSink(http_hook.url).send(make_alert())


@pytest.mark.parametrize(("status", "reason"), [(500, "HTTP 500"), (302, "HTTP 302"), (404, "")])
def test_other_answers_fail_with_the_status(http_hook: HttpHook, status: int, reason: str) -> None:
    http_hook.status = status
    with pytest.raises(DeliveryError) as caught:
        WebhookSink(http_hook.url).send(make_alert())
    assert caught.value.what.startswith(f"HTTP {status}")
    assert caught.value.where == f"webhook {http_hook.url}"


def test_a_refused_connection_fails_in_one_line(down_hook: HttpHook) -> None:
    with pytest.raises(DeliveryError, match="refused") as caught:
        WebhookSink(down_hook.url).send(make_alert())
    assert "\n" not in caught.value.what


def test_a_webhook_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        sink = WebhookSink(f"http://127.0.0.1:{port}/x", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"timed out after 0.5s"):
            sink.send(make_alert())
        assert time.monotonic() - started < 3


def test_webhook_label_and_errors_hold_no_secret(http_hook: HttpHook) -> None:
    token = "Bearer s3cr3t-t0ken"
    url = f"http://user:pw-in-url@127.0.0.1:{http_hook.port}/hook?key=q-s3cret"
    sink = WebhookSink(url, headers={"Authorization": token, "X-Api-Key": "k-123456"})
    assert sink.label == f"webhook http://127.0.0.1:{http_hook.port}/hook"
    http_hook.status, http_hook.reason = 500, f"denied {token} k-123456 q-s3cret pw-in-url"
    with pytest.raises(DeliveryError) as caught:
        sink.send(make_alert())
    text = str(caught.value)
    for secret in (token, "k-123456", "q-s3cret", "pw-in-url"):
        assert secret not in text
    assert "***" in text
    assert http_hook.requests[0].headers["Authorization"] == token  # it was sent, though
    assert http_hook.requests[0].path == "/hook?key=q-s3cret"


def test_a_user_and_password_in_the_url_become_basic_auth(http_hook: HttpHook) -> None:
    sink = WebhookSink(f"http://bot:p%40ss@127.0.0.1:{http_hook.port}/hook")
    sink.send(make_alert())
    assert http_hook.requests[0].headers["Authorization"] == "Basic Ym90OnBAc3M="  # bot:p@ss
    assert "p@ss" in sink.secrets() and "bot" not in sink.label


def test_webhook_refuses_a_non_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookSink("file:///etc/passwd")


def _email_sink(port: int, **changes: object) -> EmailSink:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "username": SMTP_USER,
        "password_env": "PLANNER_TEST_SMTP_PASSWORD",
        "sender": "planner@example.org",
        "to": ("ops@example.org", "oncall@example.org"),
        "timeout_s": 5.0,
    }
    values.update(changes)
    return EmailSink(**values)  # type: ignore[arg-type]


def test_email_is_sent_after_login(smtp_server: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANNER_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    alert = make_alert(level="critical")
    _email_sink(smtp_server.port).send(alert)
    assert smtp_server.logins == [SMTP_USER]
    (envelope,) = smtp_server.messages
    assert envelope.mail_from == "planner@example.org"
    assert envelope.rcpt_tos == ["ops@example.org", "oncall@example.org"]
    message = message_from_bytes(envelope.original_content)
    assert message["Subject"] == f"[planner] CRITICAL etl: {alert.text}"
    content = message.get_payload(decode=True).decode()
    assert alert.text in content and "account: acct-7" in content
    assert SMTP_PASSWORD not in envelope.original_content.decode()


def test_email_without_login(smtp_server: Mailbox) -> None:
    sink = _email_sink(smtp_server.port, username=None, password_env=None)
    with pytest.raises(DeliveryError, match="530"):  # this server requires a login
        sink.send(make_alert())


def test_an_unset_password_variable_is_that_delivery_s_error(
    smtp_server: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLANNER_TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(DeliveryError, match="PLANNER_TEST_SMTP_PASSWORD is not set"):
        _email_sink(smtp_server.port).send(make_alert())
    assert smtp_server.messages == []


def test_a_refused_login_is_reported_with_the_password_masked(
    smtp_server: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANNER_TEST_SMTP_PASSWORD", "wrong-" + SMTP_PASSWORD)
    with pytest.raises(DeliveryError) as caught:
        _email_sink(smtp_server.port).send(make_alert())
    assert caught.value.what.startswith("SMTP 535")
    assert SMTP_PASSWORD not in str(caught.value) and "***" in str(caught.value)


def test_email_to_a_closed_port_fails() -> None:
    with pytest.raises(DeliveryError, match="refused"):
        _email_sink(free_port(), username=None, password_env=None).send(make_alert())


def test_command_gets_the_alert_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    code = "import sys; open(sys.argv[1], 'w').write(sys.stdin.read())"
    sink = CommandSink([sys.executable, "-c", code, str(out)])
    alert = make_alert()
    sink.send(alert)
    assert json.loads(out.read_text()) == alert.body()
    assert sink.label == f"command {sys.executable}"  # arguments may hold secrets


def test_a_failing_command_reports_its_exit_and_last_stderr_line() -> None:
    code = "import sys; sys.stderr.write('first\\nno route to pager\\n'); sys.exit(3)"
    with pytest.raises(DeliveryError, match="exit 3: no route to pager"):
        CommandSink([sys.executable, "-c", code]).send(make_alert())


def test_a_missing_command_and_a_hanging_one(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="cannot start"):
        CommandSink([str(tmp_path / "absent")]).send(make_alert())
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"timed out after 0\.5s: killed"):
        CommandSink(["sleep", "30"], timeout_s=0.5).send(make_alert())
    assert time.monotonic() - started < 5


def test_log_sink_appends_one_json_line_per_alert(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "alerts.log"
    sink = LogSink(path)
    sink.send(make_alert())
    sink.send(make_alert(level="critical"))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["level"] for line in lines] == ["warning", "critical"]


def test_min_level_filters(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "a.log")  # default: warning
    assert not sink.accepts(make_alert(level="info"))
    assert sink.accepts(make_alert(level="warning")) and sink.accepts(make_alert(level="critical"))
    assert LogSink(tmp_path / "a.log", min_level="info").accepts(make_alert(level="info"))
    assert not LogSink(tmp_path / "a.log", min_level="critical").accepts(make_alert())


def test_build_sinks_adds_the_always_on_log(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path, sinks=[{"kind": "webhook", "url": "http://h:1/a"}])
    log, hook = build_sinks(pipeline)
    assert isinstance(log, LogSink) and log.path == tmp_path / "state" / "alerts.log"
    assert isinstance(hook, WebhookSink) and hook.timeout_s == 5.0
    own = make_pipeline(
        tmp_path,
        sinks=[
            {"kind": "log", "path": str(tmp_path / "mine.log"), "min_level": "info"},
            {"kind": "webhook", "url": "http://h:1/a"},
            {"kind": "webhook", "url": "http://h:1/a", "timeout": "2s"},
        ],
    )
    sinks = build_sinks(own)
    assert [s.label for s in sinks] == [
        f"log {tmp_path / 'mine.log'}",
        "webhook http://h:1/a",
        "webhook http://h:1/a #2",
    ]
    assert sinks[0].min_level == "info"
    assert isinstance(sinks[2], WebhookSink) and sinks[2].timeout_s == 2.0


def test_sinks_from_config_email_and_command(tmp_path: Path) -> None:
    email = AlertSink.model_validate(
        {
            "kind": "email",
            "host": "smtp.example.org",
            "starttls": True,
            "username": "bot",
            "password_env": "SMTP_PASSWORD",
            "from": "planner@example.org",
            "to": "ops@example.org",
            "name": "ops mail",
        }
    )
    sink = sink_from_config(email, state_dir=tmp_path, base_dir=tmp_path)
    assert isinstance(sink, EmailSink)
    assert (sink.port, sink.to, sink.label) == (587, ("ops@example.org",), "ops mail")
    command = AlertSink.model_validate({"kind": "command", "command": ["./notify", 3]})
    sink = sink_from_config(command, state_dir=tmp_path, base_dir=tmp_path)
    assert isinstance(sink, CommandSink)
    assert sink.command == ("./notify", "3") and sink.cwd == tmp_path
    assert sink.timeout_s == 10.0
