"""Pipeline files: models, loading, checks and step selection."""

from planner.config.loader import check_pipeline_file, load_pipeline, parse_pipeline
from planner.config.models import (
    Alerts,
    AlertSink,
    AutoTimeout,
    Concurrency,
    Pipeline,
    RetryAction,
    RetryPolicy,
    RetryRule,
    Schedule,
    Step,
)
from planner.config.selection import dependency_map, select_steps

__all__ = [
    "AlertSink",
    "Alerts",
    "AutoTimeout",
    "Concurrency",
    "Pipeline",
    "RetryAction",
    "RetryPolicy",
    "RetryRule",
    "Schedule",
    "Step",
    "check_pipeline_file",
    "dependency_map",
    "load_pipeline",
    "parse_pipeline",
    "select_steps",
]
