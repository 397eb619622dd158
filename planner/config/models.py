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
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from planner import defaults
from planner.config.alerts import SINK_KEYS, Alerts, AlertSink
from planner.config.types import (
    Account,
    Argument,
    Duration,
    EnvValue,
    Frozen,
    NonNegativeDuration,
    Scalar,
    Size,
    StepId,
    not_bool,
    one_or_many,
)

__all__ = [
    "BUILTIN_PLACEHOLDERS",
    "KNOWN_ERROR_CLASSES",
    "SINK_KEYS",
    "AlertSink",
    "Alerts",
    "AutoTimeout",
    "Concurrency",
    "Executor",
    "MemoryPressure",
    "Pipeline",
    "RetryAction",
    "RetryPolicy",
    "RetryRule",
    "Schedule",
    "Step",
]

KNOWN_ERROR_CLASSES = (
    "network_error",
    "timeout",
    "memory",
    "lost",
    "system_error",
    "default",
)
BUILTIN_PLACEHOLDERS = ("account", "quantity", "step", "run_id")


class RetryRule(Frozen):
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


class RetryAction(Frozen):
    """What an error class gets: how many retries and how long to wait between them."""

    max_retries: int = Field(default=0, ge=0, le=100)
    backoff: Literal["exponential", "linear", "fixed"] = "exponential"
    base: NonNegativeDuration = 1.0
    cap: NonNegativeDuration = 300.0
    jitter: bool = True


class RetryPolicy(Frozen):
    """Classification rules and the retry action for each class.

    A failure matching no rule is class ``default``; a timeout is class ``timeout``.
    Classes without an entry in ``on`` use ``on.default`` (no retry when absent).
    """

    classify: dict[str, RetryRule] = Field(default_factory=dict)
    on: dict[str, RetryAction] = Field(default_factory=dict)

    def action_for(self, error_class: str) -> RetryAction:
        return self.on.get(error_class) or self.on.get("default") or RetryAction()


class Step(Frozen):
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


class Schedule(Frozen):
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


class Concurrency(Frozen):
    """How many tasks run at once: a fixed number, ``auto`` (CPU and memory, fixed for the
    run) or ``adaptive`` (starts at ``auto``, then follows what the run measures, between
    ``min`` and ``ceiling``; default ceiling 8 per core and at least 16, always within the
    memory fit)."""

    max: int | Literal["auto", "adaptive"] = "auto"
    memory_per_task: Size | Literal["auto"] = "auto"
    min: int | None = Field(default=None, ge=1)
    ceiling: int | None = Field(default=None, ge=1)

    @field_validator("max")
    @classmethod
    def _max_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1, 'auto' or 'adaptive', got {value}")
        return value

    @model_validator(mode="after")
    def _bounds_only_when_adaptive(self) -> Concurrency:
        given = [name for name in ("min", "ceiling") if getattr(self, name) is not None]
        if given and self.max != "adaptive":
            raise ValueError(
                f"{' and '.join(given)} only apply to max: adaptive (max is {self.max!r})"
            )
        if self.min is not None and self.ceiling is not None and self.min > self.ceiling:
            raise ValueError(f"min {self.min} is above ceiling {self.ceiling}")
        return self

    @property
    def adaptive(self) -> bool:
        """Whether the limit adapts while the run goes."""
        return self.max == "adaptive"

    @property
    def rule(self) -> int | Literal["auto"]:
        """What planning chooses the (starting) concurrency by: the fixed count, or
        ``auto`` (for ``auto`` and ``adaptive``)."""
        return "auto" if self.max == "adaptive" else self.max


class AutoTimeout(Frozen):
    """What ``timeout: auto`` means for a task: its calibrated upper bound x ``factor``,
    and never less than ``floor`` seconds."""

    factor: Annotated[float, BeforeValidator(not_bool)] = Field(
        default=defaults.AUTO_TIMEOUT_FACTOR, ge=1, allow_inf_nan=False
    )
    floor: Duration = defaults.AUTO_TIMEOUT_FLOOR_S

    def seconds(self, bound_s: float) -> float:
        """The timeout for a task whose upper bound is ``bound_s`` seconds."""
        return max(bound_s * self.factor, self.floor)


class MemoryPressure(Frozen):
    """Pausing task starts while the system's memory in use is above ``threshold`` (a
    fraction): read every ``check_every``; running tasks go on; after ``max_pause`` with
    no task running one task starts anyway. ``cleanup_command`` (an argument list, no
    shell) runs once per pressure episode, stopped after ``cleanup_timeout``."""

    threshold: Annotated[float, BeforeValidator(not_bool)] = Field(
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


class Executor(Frozen):
    """Where tasks run: ``local`` processes (the default) or a Dask ``dask`` cluster at
    ``address`` (``tcp://host:port``). ``connect_timeout``: how long to reach the
    scheduler; ``worker_wait``: how long a run waits for a first worker."""

    kind: Literal["local", "dask"] = "local"
    address: str | None = None
    connect_timeout: Duration = 10.0
    worker_wait: Duration = 60.0

    @field_validator("address")
    @classmethod
    def _address_form(cls, address: str | None) -> str | None:
        import re

        if address is not None and not re.fullmatch(
            r"(tcp|tls|ws|wss)://[^\s/:]+:\d{1,5}", address
        ):
            raise ValueError(
                f"bad scheduler address {address!r}: expected tcp://HOST:PORT (or tls://)"
            )
        return address

    @model_validator(mode="after")
    def _address_matches_kind(self) -> Executor:
        if self.kind == "dask" and self.address is None:
            raise ValueError("kind: dask needs an address (tcp://HOST:PORT of the scheduler)")
        if self.kind == "local" and self.address is not None:
            raise ValueError("kind: local takes no address (did you mean kind: dask?)")
        return self

    @classmethod
    def from_flag(cls, text: str) -> Executor:
        """The ``--executor`` value: ``local``, or ``dask://HOST:PORT`` (also ``tcp://``,
        ``tls://``); raises ``ValueError`` with what is wrong."""
        if text == "local":
            return cls()
        if text.startswith("dask://"):
            text = "tcp://" + text.removeprefix("dask://")
        if "://" not in text:
            raise ValueError(f"{text!r}: expected local or dask://HOST:PORT")
        return cls(kind="dask", address=text)


class Pipeline(Frozen):
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
    #: where tasks run (default: local processes)
    executor: Executor = Field(default_factory=Executor)
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
