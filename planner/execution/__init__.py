"""Running a pipeline: the runner and its loop, executors, process trees, resource
sampling, retry policy, guards (file lock + lease), and the events observers receive."""

from planner.execution.adaptive import AdaptiveBounds, AdaptiveLimit, LimitChange, LoadReading
from planner.execution.control import LoopSettings, RunControl, StopReason
from planner.execution.events import (
    LimitChanged,
    PressureCleanup,
    PressureForcedStart,
    PressurePaused,
    PressureResumed,
    RunEvent,
    RunFinished,
    RunObserver,
    RunResult,
    RunStarted,
    RunStopping,
    TaskFinished,
    TaskRetrying,
    TasksCancelled,
    TaskSkipped,
    TaskStarted,
)
from planner.execution.executor import Executor, LocalExecutor, TaskExit, TaskHandle
from planner.execution.guards import PipelineLock, Takeover, acquire_run_guards, lease_ttl
from planner.execution.load import FixedLoadProbe, LoadProbe, SystemLoadProbe
from planner.execution.memory import MemoryExceeded, MemoryWatch, format_memory
from planner.execution.pressure import (
    CleanupRecord,
    FixedMemoryProbe,
    MemoryProbe,
    PressureGate,
    PressurePause,
    SystemMemoryProbe,
)
from planner.execution.process import ExitInfo, Launch, TaskProcess, kill_group, spawn
from planner.execution.retry import RetryDecision, backoff_delay, classify_failure, decide_retry
from planner.execution.runner import (
    PreparedRun,
    RunDirectives,
    Runner,
    RunRequest,
    auto_concurrency,
    handle_signals,
    new_run_id,
)
from planner.execution.sampling import TreeSampler, TreeUsage
from planner.execution.stopping import block_stop_signals, stop_signals_blocked
from planner.execution.tasks import TaskGraph, TaskKey, TaskState

__all__ = [
    "AdaptiveBounds",
    "AdaptiveLimit",
    "CleanupRecord",
    "Executor",
    "ExitInfo",
    "FixedLoadProbe",
    "FixedMemoryProbe",
    "Launch",
    "LimitChange",
    "LimitChanged",
    "LoadProbe",
    "LoadReading",
    "LocalExecutor",
    "LoopSettings",
    "MemoryExceeded",
    "MemoryProbe",
    "MemoryWatch",
    "PipelineLock",
    "PreparedRun",
    "PressureCleanup",
    "PressureForcedStart",
    "PressureGate",
    "PressurePause",
    "PressurePaused",
    "PressureResumed",
    "RetryDecision",
    "RunControl",
    "RunDirectives",
    "RunEvent",
    "RunFinished",
    "RunObserver",
    "RunRequest",
    "RunResult",
    "RunStarted",
    "RunStopping",
    "Runner",
    "StopReason",
    "SystemLoadProbe",
    "SystemMemoryProbe",
    "Takeover",
    "TaskExit",
    "TaskFinished",
    "TaskGraph",
    "TaskHandle",
    "TaskKey",
    "TaskProcess",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskState",
    "TasksCancelled",
    "TreeSampler",
    "TreeUsage",
    "acquire_run_guards",
    "auto_concurrency",
    "backoff_delay",
    "block_stop_signals",
    "classify_failure",
    "decide_retry",
    "format_memory",
    "handle_signals",
    "kill_group",
    "lease_ttl",
    "new_run_id",
    "spawn",
    "stop_signals_blocked",
]
