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
    """How many tasks run at once: a fixed number or ``auto`` (CPU and memory)."""

    max: int | Literal["auto"] = "auto"
    memory_per_task: Size | Literal["auto"] = "auto"

    @field_validator("max")
    @classmethod
    def _max_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be at least 1 or 'auto', got {value}")
        return value


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
