"""The `alerts` section: thresholds, sinks and their keys, one error line per field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from planner import defaults
from planner.config import AlertSink, check_pipeline_file, load_pipeline

Write = Callable[..., Path]


def with_alerts(**alerts: Any) -> dict[str, Any]:
    return {"name": "p", "alerts": alerts, "steps": [{"id": "1", "command": ["true"]}]}


def errors_of(path: Path) -> list[tuple[str, str]]:
    pipeline, issues = check_pipeline_file(path)
    assert pipeline is None, "expected the pipeline to be invalid"
    return [(i.loc, i.msg) for i in issues]


EMAIL = {
    "kind": "email",
    "host": "smtp.example.org",
    "port": 587,
    "starttls": True,
    "username": "bot",
    "password_env": "SMTP_PASSWORD",
    "from": "planner@example.org",
    "to": ["ops@example.org", "oncall@example.org"],
    "min_level": "critical",
}


def test_defaults(write_pipeline: Write) -> None:
    alerts = load_pipeline(write_pipeline(with_alerts())).alerts
    assert (alerts.warning, alerts.critical, alerts.stuck) == (0.8, 1.0, 2.0)
    assert alerts.min_excess == defaults.ALERT_MIN_EXCESS_S == 1.0
    assert alerts.drift_mdape == defaults.ALERT_DRIFT_MDAPE == 0.5
    assert alerts.drift_coverage == defaults.ALERT_DRIFT_COVERAGE == 0.1
    assert alerts.sinks == ()


def test_every_sink_kind_loads(write_pipeline: Write) -> None:
    sinks = [
        {"kind": "log"},
        {"kind": "webhook", "url": "https://hooks.example.org/x", "headers": {"X-A": "b"}},
        EMAIL,
        {"kind": "command", "command": ["notify-send", "--urgency", 2], "timeout": "30s"},
    ]
    pipeline = load_pipeline(write_pipeline(with_alerts(stuck=3, min_excess="5s", sinks=sinks)))
    log, hook, email, command = pipeline.alerts.sinks
    assert pipeline.alerts.stuck == 3.0 and pipeline.alerts.min_excess == 5.0
    assert log.min_level == "warning" and log.path is None
    assert hook.headers == {"X-A": "b"}
    assert email.sender == "planner@example.org"
    assert email.to == ("ops@example.org", "oncall@example.org")
    assert (email.port, email.starttls, email.min_level) == (587, True, "critical")
    assert command.command == ("notify-send", "--urgency", "2") and command.timeout == 30.0


def test_one_address_may_be_written_alone() -> None:
    sink = AlertSink.model_validate({**EMAIL, "to": "ops@example.org"})
    assert sink.to == ("ops@example.org",)


@pytest.mark.parametrize(
    ("sink", "loc", "msg"),
    [
        (
            {**EMAIL, "password_env": None},
            "password_env",
            "an email sink with a username needs password_env",
        ),
        ({**EMAIL, "host": None}, "host", "an email sink needs 'host'"),
        ({**EMAIL, "from": None}, "from", "an email sink needs 'from'"),
        ({**EMAIL, "to": []}, "to", "an email sink needs 'to'"),
        ({**EMAIL, "to": ["ops"]}, "to", "not an e-mail address: 'ops'"),
        ({**EMAIL, "from": "a b@c"}, "from", "not an e-mail address"),
        ({**EMAIL, "port": 70000}, "port", "less than or equal to 65535"),
        ({**EMAIL, "password_env": "hunter2!"}, "password_env", "not the password"),
        ({**EMAIL, "password": "hunter2"}, "password", "unknown key 'password'"),
        ({"kind": "webhook", "url": "file:///etc/passwd"}, "url", "http:// or https://"),
        ({"kind": "webhook", "url": "http://h/x", "to": "a@b"}, "to", "a key of email sinks"),
        ({"kind": "log", "url": "http://h/x"}, "url", "a key of webhook sinks, not of log"),
        ({"kind": "webhook", "url": "http://h/", "headers": {"A": "x\ny"}}, "headers", "one line"),
        ({"kind": "webhook", "url": "http://h/", "headers": {"A b": "x"}}, "headers", "header"),
        ({"kind": "log", "min_level": "debug"}, "min_level", "'info', 'warning' or 'critical'"),
        ({"kind": "log", "timeout": "0s"}, "timeout", "positive duration"),
        ({"kind": "pager"}, "kind", "'log', 'webhook', 'email' or 'command'"),
    ],
)
def test_a_bad_sink_is_one_line_naming_its_field(
    write_pipeline: Write, sink: dict[str, Any], loc: str, msg: str
) -> None:
    sink = {k: v for k, v in sink.items() if v is not None}
    errors = errors_of(write_pipeline(with_alerts(sinks=[{"kind": "log"}, sink])))
    assert len(errors) == 1, errors
    ((where, what),) = errors
    assert where == f"alerts.sinks[1].{loc}"
    assert msg in what
    assert "\n" not in what
    assert "hunter2" not in what  # the value is never echoed for a password key


def test_webhook_and_command_without_their_target(write_pipeline: Write) -> None:
    sinks = [{"kind": "webhook"}, {"kind": "command"}]
    errors = errors_of(write_pipeline(with_alerts(sinks=sinks)))
    assert errors == [
        ("alerts.sinks[0]", "a webhook sink needs 'url'"),
        ("alerts.sinks[1]", "a command sink needs 'command'"),
    ]


def test_an_unset_password_variable_is_not_an_error_at_load(
    write_pipeline: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    pipeline = load_pipeline(write_pipeline(with_alerts(sinks=[EMAIL])))
    assert pipeline.alerts.sinks[0].password_env == "SMTP_PASSWORD"  # checked when sending


@pytest.mark.parametrize(
    ("alerts", "loc", "msg"),
    [
        ({"critical": 2.5}, "alerts.stuck", "must be above alerts.critical (2.5), got 2"),
        ({"stuck": 1.0}, "alerts.stuck", "must be above alerts.critical (1), got 1"),
        ({"stuck": True}, "alerts.stuck", "must be a number"),
        ({"min_excess": -1}, "alerts.min_excess", "duration >= 0"),
        ({"drift_mdape": 0}, "alerts.drift_mdape", "greater than 0"),
        ({"drift_coverage": 1.5}, "alerts.drift_coverage", "less than 1"),
    ],
)
def test_bad_thresholds(write_pipeline: Write, alerts: dict[str, Any], loc: str, msg: str) -> None:
    errors = errors_of(write_pipeline(with_alerts(**alerts)))
    assert len(errors) == 1, errors
    assert errors[0][0] == loc and msg in errors[0][1]


def test_a_sink_with_no_level_filter_takes_warnings(write_pipeline: Write) -> None:
    assert defaults.ALERT_SINK_MIN_LEVEL == "warning"
    pipeline = load_pipeline(write_pipeline(with_alerts(sinks=[{"kind": "log", "path": "a.log"}])))
    assert pipeline.alerts.sinks[0].min_level == "warning"
