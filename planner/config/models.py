"""The pydantic models of a pipeline file: every key, its type, range and default.

Only ``name`` and ``steps`` are required, and in a step only ``id`` and ``command``.
Durations are stored as float seconds, sizes as int bytes. Cross-field checks (duplicate
ids, dependencies, cycles, placeholders, accounts) live in :mod:`planner.config.checks`,
which runs on whatever parsed so that every error is reported at once.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from planner import defaults
from planner.units import parse_duration, parse_size

__all__ = [
    "BUILTIN_PLACEHOLDERS",
    "KNOWN_ERROR_CLASSES",
    "SINK_KEYS",
    "AlertSink",
    "Alerts",
    "AutoTimeout",
    "Concurrency",
    "MemoryPressure",
    "Pipeline",
    "RetryAction",
    "RetryPolicy",
    "RetryRule",
    "Schedule",
    "Step",
]

KNOWN_ERROR_CLASSES = ("network_error", "timeout", "memory", "system_error", "default")
BUILTIN_PLACEHOLDERS = ("account", "quantity", "step", "run_id")


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def _non_negative_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"must be a duration >= 0, got {value!r}")
    return seconds


def _positive_size(value: object) -> int:
    size = parse_size(value)
    if size <= 0:
        raise ValueError(f"must be a positive size, got {value!r}")
    return size


def _not_bool(value: object) -> object:
    """A number field refuses ``true``/``false`` (pydantic would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _id_text(value: object) -> object:
    """Step ids are strings; a bare YAML number (``id: 1``) is taken as its text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


#: Positive seconds, written as ``90s``, ``1.5h``, ``PT1H`` or a number.
Duration = Annotated[float, BeforeValidator(_positive_duration), PlainSerializer(float)]
#: Seconds >= 0.
NonNegativeDuration = Annotated[float, BeforeValidator(_non_negative_duration)]
#: Positive bytes, written as ``512MB``, ``2GiB`` or a number.
Size = Annotated[int, BeforeValidator(_positive_size)]
StepId = Annotated[str, BeforeValidator(_id_text), Field(min_length=1)]


def _env_text(value: object) -> object:
    """Env values are text; a bare number or boolean (``THREADS: 4``) is taken as its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _arg_text(value: object) -> object:
    """A bare number or boolean in a command list (``[sleep, 5]``, ``[true]``) is taken as
    its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def one_or_many(value: object) -> object:
    """``depends_on: "1"`` means ``["1"]`` (also read by the raw-data checks)."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [value]
    return value


#: A command-line argument: text, or a number written bare.
Argument = Annotated[str, BeforeValidator(_arg_text)]
#: An environment value: text, or a number or boolean written bare in the file.
EnvValue = Annotated[str, BeforeValidator(_env_text)]
Account = Annotated[str, BeforeValidator(_id_text), Field(min_length=1)]
Scalar = str | int | float | bool


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryRule(_Frozen):
    """How a failure gets an error class: by exit code or by a regex found in stderr."""

    exit_codes: tuple[int, ...] = ()
    stderr: tuple[str, ...] = ()

    @field_validator("stderr")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        import re

        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad stderr pattern {pattern!r}: {exc}") from None
        return patterns


class RetryAction(_Frozen):
    """What an error class gets: how many retries and how long to wait between them."""

    max_retries: int = Field(default=0, ge=0, le=100)
    backoff: Literal["exponential", "linear", "fixed"] = "exponential"
    base: NonNegativeDuration = 1.0
    cap: NonNegativeDuration = 300.0
    jitter: bool = True


class RetryPolicy(_Frozen):
    """Classification rules and the retry action for each class.

    A failure matching no rule is class ``default``; a timeout is class ``timeout``.
    Classes without an entry in ``on`` use ``on.default`` (no retry when absent).
    """

    classify: dict[str, RetryRule] = Field(default_factory=dict)
    on: dict[str, RetryAction] = Field(default_factory=dict)

    def action_for(self, error_class: str) -> RetryAction:
        return self.on.get(error_class) or self.on.get("default") or RetryAction()


class Step(_Frozen):
    """One step of a pipeline: a command, run once or once per account."""

    id: StepId
    name: str | None = None
    description: str | None = None
    command: tuple[Argument, ...] | str
    shell: bool = False
    depends_on: Annotated[tuple[StepId, ...], BeforeValidator(one_or_many)] = ()
    per_account: bool = False
    quantity: int = Field(default=0, ge=0)
    params: dict[str, Scalar] = Field(default_factory=dict)
    #: params whose value measures the work (e.g. ``pages``): durations grow with them
    size: Annotated[tuple[str, ...], BeforeValidator(one_or_many)] = ()
    env: dict[str, EnvValue] = Field(default_factory=dict)
    cwd: Path | None = None
    timeout: Duration | Literal["auto"] | None = None
    #: the most memory (RSS) the task's whole process tree may hold; over it the tree is
    #: stopped and the attempt fails with error class ``memory``
    memory_limit: Size | None = None
    retry: str | RetryPolicy | None = None
    enabled: bool = True

    @field_validator("size")
    @classmethod
    def _size_names_numeric_params(
        cls, size: tuple[str, ...], info: ValidationInfo
    ) -> tuple[str, ...]:
        params = info.data.get("params") or {}
        for name in size:
            value = params.get(name)
            if value is None:
                known = ", ".join(params) or "none"
                raise ValueError(f"{name!r} is not a param of this step (params: {known})")
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(
                    f"param {name!r} must be a number > 0 to measure size, got {value!r}"
                )
        return size

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, command: tuple[str, ...] | str) -> tuple[str, ...] | str:
        if isinstance(command, str) and not command.strip():
            raise ValueError("command is empty")
        if isinstance(command, tuple) and (not command or not command[0]):
            raise ValueError("command is empty: give the program and its arguments as a list")
        return command

    @property
    def label(self) -> str:
        """``id`` and, when given, the name: ``1 (collect)``."""
        return f"{self.id} ({self.name})" if self.name else self.id


class Schedule(_Frozen):
    """When runs start: a cadence or a cron line, and how the interval is decided."""

    cadence: Duration | None = None
    cron: str | None = None
    timezone: str = "UTC"
    policy: Literal["fixed", "predicted"] = "predicted"
    quantile: float = Field(default=defaults.QUANTILE, gt=0, lt=1)
    min_margin: float = Field(default=defaults.MIN_MARGIN, ge=0)
    max_interval: Duration | None = None

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, cron: str | None) -> str | None:
        if cron is None:
            return None
        from apscheduler.triggers.cron import CronTrigger

        try:
            trigger = CronTrigger.from_crontab(cron, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"bad cron expression {cron!r}: {exc}") from None
        # A crontab line has no year: one that fires in none of the next 8 years (leap
        # years included) never fires at all, e.g. "0 0 30 2 *".
        if trigger.get_next_fire_time(None, _CRON_PROBE) is None:
            raise ValueError(f"cron expression {cron!r} never fires")
        return cron


_CRON_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


class Concurrency(_Frozen):
    """How many tasks run at once: a fixed number or ``auto`` (CPU and memory)."""

    max: int | Literal["auto"] = "auto"
    memory_per_task: Size | Literal["auto"] = "auto"

    @field_validator("max")
    @classmethod
    def _max_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1 or 'auto', got {value}")
        return value


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


class AlertSink(_Frozen):
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


class Alerts(_Frozen):
    """Alert thresholds and the sinks.

    ``warning``, ``critical`` and ``stuck`` are fractions of the calibrated upper bound
    (stuck above critical); a task alert also needs ``min_excess`` seconds past its
    threshold. A ``model_drift`` alert fires after a run when the recent median absolute
    percentage error goes above ``drift_mdape`` (0.5 = 50 %), or the share of tasks within
    their bound falls more than ``drift_coverage`` below the target quantile.
    """

    warning: float = Field(default=defaults.ALERT_WARNING, gt=0)
    critical: float = Field(default=defaults.ALERT_CRITICAL, gt=0)
    stuck: Annotated[float, BeforeValidator(_not_bool)] = Field(
        default=defaults.ALERT_STUCK, gt=0, allow_inf_nan=False, validate_default=True
    )
    min_excess: NonNegativeDuration = defaults.ALERT_MIN_EXCESS_S
    drift_mdape: Annotated[float, BeforeValidator(_not_bool)] = Field(
        default=defaults.ALERT_DRIFT_MDAPE, gt=0, allow_inf_nan=False
    )
    drift_coverage: Annotated[float, BeforeValidator(_not_bool)] = Field(
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


class AutoTimeout(_Frozen):
    """What ``timeout: auto`` means for a task: its calibrated upper bound x ``factor``,
    and never less than ``floor`` seconds."""

    factor: Annotated[float, BeforeValidator(_not_bool)] = Field(
        default=defaults.AUTO_TIMEOUT_FACTOR, ge=1, allow_inf_nan=False
    )
    floor: Duration = defaults.AUTO_TIMEOUT_FLOOR_S

    def seconds(self, bound_s: float) -> float:
        """The timeout for a task whose upper bound is ``bound_s`` seconds."""
        return max(bound_s * self.factor, self.floor)


class MemoryPressure(_Frozen):
    """Pausing task starts while the system's memory in use is above ``threshold`` (a
    fraction): read every ``check_every``; running tasks go on; after ``max_pause`` with
    no task running one task starts anyway. ``cleanup_command`` (an argument list, no
    shell) runs once per pressure episode, stopped after ``cleanup_timeout``."""

    threshold: Annotated[float, BeforeValidator(_not_bool)] = Field(
        default=defaults.PRESSURE_THRESHOLD, gt=0, le=1, allow_inf_nan=False
    )
    check_every: Duration = defaults.PRESSURE_CHECK_EVERY_S
    max_pause: Duration = defaults.PRESSURE_MAX_PAUSE_S
    cleanup_command: tuple[Argument, ...] | None = None
    cleanup_timeout: Duration = defaults.PRESSURE_CLEANUP_TIMEOUT_S

    @field_validator("cleanup_command")
    @classmethod
    def _cleanup_not_empty(cls, command: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if command is not None and (not command or not command[0]):
            raise ValueError("cleanup_command is empty: give the program and its arguments")
        return command


class Pipeline(_Frozen):
    """A validated pipeline. Paths are absolute (resolved against the file's folder)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str | None = None
    accounts: tuple[Account, ...] | None = None
    accounts_file: Path | None = None
    state_dir: Path = Path(defaults.STATE_DIR)
    lease_ttl: Duration = defaults.LEASE_TTL_S
    schedule: Schedule = Field(default_factory=Schedule)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    retry_policies: dict[str, RetryPolicy] = Field(default_factory=dict)
    alerts: Alerts = Field(default_factory=Alerts)
    auto_timeout: AutoTimeout = Field(default_factory=AutoTimeout)
    #: pause task starts while the system's memory is short (off when absent)
    memory_pressure: MemoryPressure | None = None
    steps: tuple[Step, ...]
    #: Where the pipeline was read from (set by the loader, not by the file).
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("steps")
    @classmethod
    def _has_steps(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        # An after-validator, not Field(min_length=1): pydantic counts only the steps that
        # validated, so one bad field in a one-step file also reported "steps" as empty.
        if not steps:
            raise ValueError("a pipeline needs at least one step")
        return steps

    def step(self, step_id: str) -> Step:
        """The step with this id (``KeyError`` when there is none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def account_list(self) -> tuple[str, ...]:
        """The accounts per-account steps fan out over (empty when none)."""
        return self.accounts or ()

    def retry_policy(self, step: Step) -> RetryPolicy | None:
        """The retry policy of ``step``, resolving a policy name."""
        if isinstance(step.retry, RetryPolicy):
            return step.retry
        if isinstance(step.retry, str):
            return self.retry_policies.get(step.retry)
        return None

    def tasks_per_run(self, steps: Collection[str] | None = None) -> int:
        """Tasks in one run (of the enabled ``steps`` only, when given; default all):
        one per account for per-account steps, else one."""
        n_accounts = len(self.account_list)
        return sum(
            n_accounts if s.per_account else 1
            for s in self.steps
            if s.enabled and (steps is None or s.id in steps)
        )
