"""Every error planner raises, under one root.

    PlannerError                      exit 2 unless a child says otherwise
    ├── ConfigError (ValueError)      a pipeline file or a selection is wrong; carries every issue
    ├── UsageError (ValueError)       a command-line argument is wrong
    ├── InputFileError (OSError)      a file to read is missing, unreadable or malformed
    ├── StoreError                    the history database cannot be used
    │   └── SchemaVersionError        the database carries a schema this code does not know
    ├── RunActiveError                another run of the pipeline holds the lease (exit 3)
    ├── ModelError                    a model artifact is missing, corrupt or untrusted
    └── ExecutionError                the runner could not start or finish a task

Each error knows *where* (a file, a field, a run) and *what*; the CLI prints
``planner: error: <where>: <what>`` and exits with ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ClusterError",
    "ConfigError",
    "ConfigIssue",
    "DeliveryError",
    "ExecutionError",
    "InputFileError",
    "ModelError",
    "PlannerError",
    "RunActiveError",
    "SchemaVersionError",
    "StoreError",
    "UsageError",
]


class PlannerError(Exception):
    """Root of every error planner raises on purpose."""

    exit_code: int = 2

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}" if where else what)
        self.where = where
        self.what = what

    def lines(self) -> list[str]:
        """The error as ``<where>: <what>`` lines, one per problem."""
        return [str(self)]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a pipeline file: the field path and what is wrong there."""

    loc: str
    msg: str

    def as_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "msg": self.msg}


class ConfigError(PlannerError, ValueError):
    """A pipeline file (or a selection of its steps) is invalid; holds every issue found."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        first = self.issues[0] if self.issues else ConfigIssue("", "invalid")
        where = f"{source}: {first.loc}" if first.loc else source
        super().__init__(where, first.msg)

    def lines(self) -> list[str]:
        return [
            f"{self.source}: {i.loc}: {i.msg}" if i.loc else f"{self.source}: {i.msg}"
            for i in self.issues
        ]


class UsageError(PlannerError, ValueError):
    """A command-line argument is wrong."""


class InputFileError(PlannerError, OSError):
    """A file to read is missing, unreadable or malformed."""


class StoreError(PlannerError):
    """The history database cannot be opened, created or written."""


class SchemaVersionError(StoreError):
    """The database's schema version is not one this code knows."""


class RunActiveError(PlannerError):
    """Another run of this pipeline is active; nothing was started."""

    exit_code = 3


class ModelError(PlannerError):
    """A model artifact is missing, corrupt, or does not match its card."""


class DeliveryError(PlannerError):
    """A sink could not deliver an alert: ``where`` is the sink's label, ``what`` one
    line (secrets masked)."""


class ExecutionError(PlannerError):
    """The runner could not start or complete a task for reasons outside the task."""


class ClusterError(ExecutionError):
    """A Dask cluster cannot run tasks: its scheduler cannot be reached, or no worker
    joined in time (``where``: the scheduler's address)."""
