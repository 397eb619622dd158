"""The machine's load as an adaptive limit reads it (:class:`LoadProbe`): the CPU busy
share since the previous reading, memory in use, load average per core."""

from __future__ import annotations

import os
from typing import Protocol

from planner.execution.adaptive import LoadReading

__all__ = ["FixedLoadProbe", "LoadProbe", "SystemLoadProbe"]


class LoadProbe(Protocol):
    """Where an adaptive limit reads the machine's load."""

    def read(self) -> LoadReading:
        """The load now (the CPU share since the previous call)."""
        ...


class SystemLoadProbe:
    """This machine, through psutil (``cpu_percent`` between calls, ``virtual_memory``,
    ``os.getloadavg``)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._cores = psutil.cpu_count() or 1
        psutil.cpu_percent(interval=None)  # the first call only sets the reference

    def read(self) -> LoadReading:
        psutil = self._psutil
        memory = psutil.virtual_memory()
        try:
            load = os.getloadavg()[0] / self._cores
        except OSError:
            load = None
        return LoadReading(
            cpu_busy=psutil.cpu_percent(interval=None) / 100.0,
            memory_used=memory.percent / 100.0,
            memory_total_mb=memory.total / 2**20,
            load_per_core=load,
            cores=self._cores,
        )


class FixedLoadProbe:
    """Says whatever ``reading`` is set to (tests); counts its readings."""

    def __init__(self, reading: LoadReading | None = None) -> None:
        self.reading = reading or LoadReading()
        self.readings = 0

    def read(self) -> LoadReading:
        self.readings += 1
        return self.reading
