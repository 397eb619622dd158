"""Where tasks run: the :class:`Executor` interface, and local processes behind it.

The run loop only talks to an executor: it opens it for the run, starts a
:class:`~planner.execution.process.Launch` (getting a handle), hands the handle to one
of its waiting threads, which calls :meth:`Executor.wait` (it returns when the task
ended, was killed at its deadline, or was killed on request), and asks for kills with
:meth:`Executor.request_kill` from the loop's thread. A step's ``memory_limit`` is
enforced by the loop on :meth:`Executor.memory_in_use` (the RSS of the task's whole tree
as last measured), so every executor that reports it gets the same limit.
:class:`LocalExecutor` runs each task as a process tree of this machine (its own session,
sampled for memory and CPU); another executor (Dask distributed) plugs in here without
changing the loop.

Times (``deadline``, :attr:`ExitInfo.ended_mono`) are monotonic seconds of the clock
given to :meth:`Executor.open`, the run's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from planner.clock import Clock
from planner.execution.process import ExitInfo, Launch, TaskProcess, spawn
from planner.execution.sampling import TreeSampler, TreeUsage

__all__ = ["Executor", "LocalExecutor", "TaskExit", "TaskHandle"]


@dataclass(frozen=True)
class TaskExit:
    """How a task ended, with what its whole tree used (``None`` when not measured)."""

    info: ExitInfo
    peak_rss_mb: float | None
    cpu_s: float | None


class TaskHandle(Protocol):
    """A started task: its process and process group ids where there are (else None)."""

    @property
    def pid(self) -> int | None: ...

    @property
    def pgid(self) -> int | None: ...


class Executor(Protocol):
    """Runs tasks for one run at a time (``open`` ... ``close``)."""

    def open(self, clock: Clock) -> None:
        """Get ready for a run whose times come from ``clock``."""
        ...

    def close(self) -> None:
        """The run is over: release what ``open`` took (idempotent)."""
        ...

    def start(self, launch: Launch) -> TaskHandle:
        """Start a task; raises :class:`~planner.errors.ExecutionError` when it cannot."""
        ...

    def wait(self, handle: TaskHandle, deadline: float | None, kill_grace: float) -> TaskExit:
        """Block until the task ended; at ``deadline`` kill its tree (TERM, ``kill_grace``
        seconds, KILL) and report it ``timed_out``. Called once per handle, from a thread
        of the loop's own."""
        ...

    def request_kill(self, handle: TaskHandle, grace: float) -> None:
        """Ask for the task's tree to be killed (TERM, ``grace`` s, KILL; 0: KILL now); its
        :meth:`wait` then returns ``cancelled``. Safe from any thread, and before ``wait``."""
        ...

    def memory_in_use(self, handle: TaskHandle) -> int | None:
        """Bytes of RSS the task's whole process tree held at its last measurement
        (``None`` when unknown or ended). Cheap: returns what was measured, measures
        nothing; called from the loop's thread about every 0.2 s per limited task."""
        ...


class LocalExecutor:
    """Tasks as process trees on this machine (:func:`~planner.execution.process.spawn`),
    their memory and CPU sampled every ``sample_interval`` seconds by one thread."""

    def __init__(self, *, sample_interval: float = 0.25) -> None:
        self.sample_interval = sample_interval
        self._sampler: TreeSampler | None = None
        self._clock: Clock | None = None

    def open(self, clock: Clock) -> None:
        self._clock = clock
        if self._sampler is None:
            self._sampler = TreeSampler(self.sample_interval)
            self._sampler.start()

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    def start(self, launch: Launch) -> TaskProcess:
        sampler, clock = self._sampler, self._clock
        assert sampler is not None and clock is not None, "LocalExecutor.open() first"
        process = spawn(launch, clock.monotonic)
        sampler.add(process.pid)
        return process

    def wait(self, handle: TaskHandle, deadline: float | None, kill_grace: float) -> TaskExit:
        process, sampler = _own(handle), self._sampler
        assert sampler is not None, "LocalExecutor.open() first"
        box: list[TreeUsage] = []
        info = process.wait(
            deadline, kill_grace, before_reap=lambda: box.append(sampler.remove(process.pid))
        )
        usage = box[0] if box else TreeUsage()
        peak_mb, cpu_s = usage.final(info.maxrss_kb, info.cpu_s)
        return TaskExit(info, peak_mb, cpu_s)

    def request_kill(self, handle: TaskHandle, grace: float) -> None:
        _own(handle).request_kill(grace)

    def memory_in_use(self, handle: TaskHandle) -> int | None:
        sampler = self._sampler
        return sampler.current(_own(handle).pid) if sampler is not None else None


def _own(handle: TaskHandle) -> TaskProcess:
    if not isinstance(handle, TaskProcess):
        raise TypeError(f"not a task of LocalExecutor: {handle!r}")
    return handle
