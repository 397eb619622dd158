"""The machine a plan is made for: cores, free memory and load, read by a probe.

Planning never reads the machine itself: a front end asks a :class:`MachineProbe` (the
service handle holds one) and hands the :class:`MachineState` to planning as a value.
Tests and what-if questions use :class:`FixedMachine`; a run on a Dask cluster plans for
the cluster (:class:`DaskMachine`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from planner.execution.dask.executor import DaskExecutor

__all__ = ["DaskMachine", "FixedMachine", "LocalMachine", "MachineProbe", "MachineState"]


@dataclass(frozen=True)
class MachineState:
    """What planning needs to know about the machine; ``None`` when unknown."""

    cpu_count: int | None
    free_memory_mb: float | None
    load_avg: float | None = None
    #: The most tasks it runs at once whatever the CPU says (a Dask cluster's slots: more
    #: would only queue on its scheduler); ``None``: no such limit.
    slots: int | None = None


class MachineProbe(Protocol):
    """Reads the machine's state now."""

    def read(self) -> MachineState: ...


class LocalMachine:
    """This machine, through ``os`` and psutil."""

    def read(self) -> MachineState:
        import psutil

        try:
            load: float | None = os.getloadavg()[0]
        except OSError:
            load = None
        return MachineState(
            cpu_count=os.cpu_count(),
            free_memory_mb=psutil.virtual_memory().available / 2**20,
            load_avg=load,
        )


@dataclass(frozen=True)
class FixedMachine:
    """A machine whose state is given (tests, or planning for another host)."""

    state: MachineState

    def read(self) -> MachineState:
        return self.state


class DaskMachine:
    """A Dask cluster as the machine, read through its executor (connecting, and waiting
    for a first worker, as the executor does: :class:`~planner.errors.ClusterError` when
    there is none in time).

    Cores: the cluster's slots (the sum of the workers' threads) plus one, because
    ``auto`` concurrency keeps one core of the machine for the runner (``cores - 1``),
    and the runner does not run on the workers; so ``auto`` at one core per task is the
    slot count; ``slots``: the slots, which no plan goes past. Free memory: the workers'
    ``memory_limit`` minus what they hold now (unknown when a worker has no limit). No
    load average.
    """

    def __init__(self, executor: DaskExecutor) -> None:
        self.executor = executor

    def read(self) -> MachineState:
        state = self.executor.cluster()
        free = None
        if state.memory_limit > 0:
            free = max(0, state.memory_limit - state.memory_used) / 2**20
        return MachineState(
            cpu_count=state.slots + 1, free_memory_mb=free, load_avg=None, slots=state.slots
        )
