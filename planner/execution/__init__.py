"""Running a pipeline: process trees, resource sampling, retries, guards, the run loop."""

from planner.execution.guards import PipelineLock, Takeover, acquire_run_guards, lease_ttl
from planner.execution.process import ExitInfo, Launch, TaskProcess, kill_group, spawn
from planner.execution.retry import RetryDecision, backoff_delay, classify_failure, decide_retry
from planner.execution.runner import (
    Runner,
    RunObserver,
    RunRequest,
    RunResult,
    auto_concurrency,
    handle_signals,
    new_run_id,
)
from planner.execution.sampling import TreeSampler, TreeUsage
from planner.execution.stopping import block_stop_signals, stop_signals_blocked
from planner.execution.tasks import TaskGraph, TaskKey, TaskState

__all__ = [
    "ExitInfo",
    "Launch",
    "PipelineLock",
    "RetryDecision",
    "RunObserver",
    "RunRequest",
    "RunResult",
    "Runner",
    "Takeover",
    "TaskGraph",
    "TaskKey",
    "TaskProcess",
    "TaskState",
    "TreeSampler",
    "TreeUsage",
    "acquire_run_guards",
    "auto_concurrency",
    "backoff_delay",
    "block_stop_signals",
    "classify_failure",
    "decide_retry",
    "handle_signals",
    "kill_group",
    "lease_ttl",
    "new_run_id",
    "spawn",
    "stop_signals_blocked",
]
