"""planner: run recurring batch pipelines safely and learn how long they take.

Importing this package is cheap: the pipeline models (pydantic, YAML), scikit-learn,
pandas and the web stack are imported only when used. ``Pipeline``, ``Step``,
``load_pipeline`` and ``select_steps`` are loaded from :mod:`planner.config` on first
access, so ``planner --help`` never pays for pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from planner.errors import (
    ConfigError,
    ConfigIssue,
    ExecutionError,
    InputFileError,
    ModelError,
    PlannerError,
    RunActiveError,
    SchemaVersionError,
    StoreError,
    UsageError,
)

if TYPE_CHECKING:
    from planner.config import Pipeline, Step, load_pipeline, select_steps

__version__ = "0.1.0"

#: Attributes loaded on first access, and the module that holds each.
_LAZY = {
    "Pipeline": "planner.config",
    "Step": "planner.config",
    "load_pipeline": "planner.config",
    "select_steps": "planner.config",
}

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "ExecutionError",
    "InputFileError",
    "ModelError",
    "Pipeline",
    "PlannerError",
    "RunActiveError",
    "SchemaVersionError",
    "Step",
    "StoreError",
    "UsageError",
    "__version__",
    "load_pipeline",
    "select_steps",
]


def __getattr__(name: str) -> Any:
    """``planner.Pipeline`` and the like: imported from their module when first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'planner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
