"""The ``alerts`` section of a pipeline file: thresholds and sinks (log, webhook, email,
command); see :mod:`planner.monitoring` for what reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, cast

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from planner import defaults
from planner.config.types import (
    Argument,
    Duration,
    Frozen,
    NonNegativeDuration,
    not_bool,
    one_or_many,
)

__all__ = ["SINK_KEYS", "AlertLevelName", "AlertSink", "Alerts"]

AlertLevelName = Literal["info", "warning", "critical"]

#: The keys each sink kind reads, besides ``kind``, ``name``, ``min_level`` and ``timeout``;
#: a key of another kind is refused, so a misplaced ``to`` never goes unnoticed.
SINK_KEYS: dict[str, tuple[str, ...]] = {
    "log": ("path",),
    "webhook": ("url", "headers"),
    "email": ("host", "port", "starttls", "username", "password_env", "from", "to"),
    "command": ("command",),
}


_SINK_FIELDS = ("path", "url", "headers", "command", "host", "port", "starttls", "username")
_EMAIL_REQUIRED = ("host", "from", "to")


def _sink_key(field_name: str | None) -> str:
    return "from" if field_name == "from_" else str(field_name)


def _unset(value: object) -> bool:
    return value is None or value is False or value in ((), {})


def _address(value: str) -> str:
    if "@" not in value or any(c.isspace() for c in value) or len(value) > 254:
        raise ValueError(f"not an e-mail address: {value!r}")
    return value


class AlertSink(Frozen):
    """Where alerts go: ``log`` (a JSON line per alert in a file), ``webhook`` (a JSON
    POST), ``email`` (SMTP) or ``command`` (the alert as JSON on its stdin).

    Each kind reads its keys in :data:`SINK_KEYS`. ``name`` is the sink's label in the
    history (default: derived from the kind and its target, without secrets); ``timeout``
    overrides the kind's default. An email password is never in the file: ``password_env``
    names the environment variable that holds it, read when an alert is sent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["log", "webhook", "email", "command"]
    name: str | None = Field(default=None, min_length=1, max_length=200)
    min_level: AlertLevelName = Field(default=cast(AlertLevelName, defaults.ALERT_SINK_MIN_LEVEL))
    timeout: Duration | None = None
    # log
    path: Path | None = None
    # webhook
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # command
    command: tuple[Argument, ...] | None = None
    # email
    host: str | None = Field(default=None, validate_default=True)
    port: int | None = Field(default=None, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password_env: str | None = Field(default=None, validate_default=True)
    from_: str | None = Field(default=None, alias="from", validate_default=True)
    to: Annotated[tuple[str, ...], BeforeValidator(one_or_many)] = Field(
        default=(), validate_default=True
    )

    @field_validator(*_SINK_FIELDS, "password_env", "from_", "to")
    @classmethod
    def _key_of_this_kind(cls, value: object, info: ValidationInfo) -> object:
        kind = info.data.get("kind")
        key = _sink_key(info.field_name)
        if kind not in SINK_KEYS:
            return value  # the kind itself is reported
        if key not in SINK_KEYS[kind]:
            if not _unset(value):
                owners = [k for k, keys in SINK_KEYS.items() if key in keys]
                raise ValueError(f"{key!r} is a key of {owners[0]} sinks, not of {kind} sinks")
            return value
        if kind == "email" and key in _EMAIL_REQUIRED and not value:
            raise ValueError(f"an email sink needs {key!r}")
        return value

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, url: str | None) -> str | None:
        if url is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname or " " in url:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {url!r}")
        return url

    @field_validator("headers")
    @classmethod
    def _headers_are_plain(cls, headers: dict[str, str]) -> dict[str, str]:
        import re

        for name, value in headers.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"not a header name: {name!r}")
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r}: a value must be one line")
        return headers

    @field_validator("password_env")
    @classmethod
    def _password_from_environment(cls, name: str | None, info: ValidationInfo) -> str | None:
        import re

        if name is None:
            if info.data.get("kind") == "email" and info.data.get("username"):
                raise ValueError(
                    "an email sink with a username needs password_env: the name of the "
                    "environment variable that holds the password (never the password itself)"
                )
            return None
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(
                "must be the name of an environment variable (letters, digits and _), "
                "not the password"
            )
        return name

    @field_validator("from_")
    @classmethod
    def _from_is_an_address(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    @field_validator("to")
    @classmethod
    def _to_are_addresses(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_address(v) for v in values)

    @model_validator(mode="wrap")
    @classmethod
    def _errors_name_from(
        cls, data: object, handler: ModelWrapValidatorHandler[AlertSink]
    ) -> AlertSink:
        # pydantic names a checked default by its attribute (``from_``), a given value by
        # its key (``from``): errors must name the key the file has.
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            if not any(e["loc"][:1] == ("from_",) for e in errors):
                raise
            details: list[InitErrorDetails] = []
            for error in errors:
                loc = error["loc"]
                if loc[:1] == ("from_",):
                    loc = ("from", *loc[1:])
                detail = InitErrorDetails(type=error["type"], loc=loc, input=error["input"])
                if "ctx" in error:
                    detail["ctx"] = error["ctx"]
                details.append(detail)
            raise ValidationError.from_exception_data(exc.title, details) from None

    @property
    def sender(self) -> str | None:
        """The ``from`` address of an email sink."""
        return self.from_


class Alerts(Frozen):
    """Alert thresholds and the sinks.

    ``warning``, ``critical`` and ``stuck`` are fractions of the calibrated upper bound
    (stuck above critical); a task alert also needs ``min_excess`` seconds past its
    threshold. A ``model_drift`` alert fires after a run when the recent median absolute
    percentage error goes above ``drift_mdape`` (0.5 = 50 %), or the share of tasks within
    their bound falls more than ``drift_coverage`` below the target quantile.
    """

    warning: float = Field(default=defaults.ALERT_WARNING, gt=0)
    critical: float = Field(default=defaults.ALERT_CRITICAL, gt=0)
    stuck: Annotated[float, BeforeValidator(not_bool)] = Field(
        default=defaults.ALERT_STUCK, gt=0, allow_inf_nan=False, validate_default=True
    )
    min_excess: NonNegativeDuration = defaults.ALERT_MIN_EXCESS_S
    drift_mdape: Annotated[float, BeforeValidator(not_bool)] = Field(
        default=defaults.ALERT_DRIFT_MDAPE, gt=0, allow_inf_nan=False
    )
    drift_coverage: Annotated[float, BeforeValidator(not_bool)] = Field(
        default=defaults.ALERT_DRIFT_COVERAGE, gt=0, lt=1
    )
    sinks: tuple[AlertSink, ...] = ()

    @field_validator("stuck")
    @classmethod
    def _stuck_above_critical(cls, stuck: float, info: ValidationInfo) -> float:
        critical = info.data.get("critical")
        if isinstance(critical, float) and stuck <= critical:
            raise ValueError(f"must be above alerts.critical ({critical:g}), got {stuck:g}")
        return stuck
