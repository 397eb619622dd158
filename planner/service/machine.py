"""The machine a plan is made for: cores, free memory and load, read by a probe.

Planning never reads the machine itself: a front end asks a :class:`MachineProbe` (the
service handle holds one) and hands the :class:`MachineState` to planning as a value.
Tests and what-if questions use :class:`FixedMachine`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

__all__ = ["FixedMachine", "LocalMachine", "MachineProbe", "MachineState"]


@dataclass(frozen=True)
class MachineState:
    """What planning needs to know about the machine; ``None`` when unknown."""

    cpu_count: int | None
    free_memory_mb: float | None
    load_avg: float | None = None


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
