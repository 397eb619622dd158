"""planner: run recurring batch pipelines safely and learn how long they take.

Importing this package is cheap: scikit-learn, pandas and the web stack are imported
only by the modules that use them.
"""

from planner.config import Pipeline, Step, load_pipeline, select_steps
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

__version__ = "0.1.0"

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
