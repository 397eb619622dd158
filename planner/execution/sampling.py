"""Peak memory and CPU time of each running task's whole process tree.

One background thread samples every registered tree on a timer (not per scheduler tick):
one pass over the process table per tick serves every tree. A tree is also sampled once
right after its spawn, so a task shorter than the interval still gets figures; at the end
the kernel's own figures from ``os.wait4`` (``ru_maxrss``, CPU of the task and its reaped
children) are taken as a floor.

Memory is each process's own peak so far (``VmHWM`` in ``/proc/<pid>/status``, which
the kernel keeps up to date between samples), summed over the tree; for a tree of one
process that is its true peak up to the last sample, for several processes an upper
bound (their peaks need not coincide). The same read gives each process's RSS now
(``VmRSS``): their sum at the last sample is what the tree holds
(:meth:`TreeSampler.current`, what a step's ``memory_limit`` is checked against).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

from planner.execution.stopping import block_stop_signals

__all__ = ["TreeSampler", "TreeUsage"]


@dataclass
class TreeUsage:
    """What was seen of one tree: the peak of its summed RSS and the CPU seconds per pid."""

    peak_rss_bytes: int = 0
    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    added: float = 0.0
    #: The tree's summed RSS at the last sample (a young tree: at least its root's).
    rss_bytes: int = 0

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_by_pid.values())

    def final(self, maxrss_kb: int, rusage_cpu_s: float) -> tuple[float | None, float]:
        """``(peak_rss_mb, cpu_s)`` with the kernel's figures from ``wait4`` as a floor.

        The peak is ``None`` when nothing was measured (a task that exited before its
        first sample, whose ``ru_maxrss`` could not be told from the runner's own).
        """
        peak = max(self.peak_rss_bytes, maxrss_kb * 1024)
        return (peak / (1024 * 1024) if peak > 0 else None), max(self.cpu_s, rusage_cpu_s)


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (from ``/proc/<pid>/stat``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        fields = stat[stat.rfind(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return None


def _rss(pid: int) -> tuple[int, int]:
    """Bytes of ``VmHWM`` (the process's peak RSS) and ``VmRSS`` (its RSS now) of a live
    process, else 0 (``VmRSS`` follows ``VmHWM`` in the file: one read gives both)."""
    peak = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    peak = int(line.split()[1]) * 1024
                elif line.startswith(b"VmRSS:"):
                    return peak, int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return peak, 0


#: Trees younger than this get their root sampled every :data:`YOUNG_TICK_S` as well.
YOUNG_S = 2.0
YOUNG_TICK_S = 0.05


class TreeSampler:
    """Samples the registered process trees every ``interval`` seconds in a thread.

    Young trees (the first :data:`YOUNG_S` seconds) also get their root process sampled
    every :data:`YOUNG_TICK_S` (two small ``/proc`` reads), so short tasks get figures
    close to their real peak without a pass over the whole process table.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._trees: dict[int, TreeUsage] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def add(self, pid: int) -> None:
        """Register a freshly spawned task and sample its root at once."""
        usage = TreeUsage(added=time.monotonic())
        cpu = _cpu_seconds(pid)
        if cpu is not None:
            usage.cpu_by_pid[pid] = cpu
            usage.peak_rss_bytes, usage.rss_bytes = _rss(pid)
        with self._lock:
            self._trees[pid] = usage

    def remove(self, pid: int) -> TreeUsage:
        """Unregister a task (call before reaping it) and return what was seen."""
        with self._lock:
            return self._trees.pop(pid, None) or TreeUsage()

    def current(self, pid: int) -> int | None:
        """Bytes of RSS the registered tree of ``pid`` held at its last sample (None when
        it is not registered)."""
        with self._lock:
            usage = self._trees.get(pid)
            return usage.rss_bytes if usage is not None else None

    def sample(self) -> None:
        """One pass over the process table, updating every registered tree.

        The pass runs without the lock, so a task that exits meanwhile is unregistered
        (and its exit recorded) at once; a tree unregistered during the pass keeps what
        was seen before it.
        """
        with self._lock:
            trees = list(self._trees.items())
        if not trees:
            return
        children: dict[int, list[int]] = {}
        cpu_of: dict[int, float] = {}
        for proc in psutil.process_iter(["ppid", "cpu_times"]):
            info = proc.info
            times = info.get("cpu_times")
            if times is None:
                continue
            children.setdefault(info.get("ppid") or 0, []).append(proc.pid)
            cpu_of[proc.pid] = times.user + times.system
        seen: list[tuple[int, TreeUsage, int, int, dict[int, float]]] = []
        for root, usage in trees:
            total = now = 0
            cpu: dict[int, float] = {}
            todo = [root]
            while todo:
                pid = todo.pop()
                if pid not in cpu_of:
                    continue
                peak, rss = _rss(pid)
                total += peak
                now += rss
                cpu[pid] = cpu_of[pid]
                todo.extend(children.get(pid, ()))
            seen.append((root, usage, total, now, cpu))
        with self._lock:
            for root, usage, total, now, cpu in seen:
                if self._trees.get(root) is not usage:
                    continue  # unregistered during the pass: its figures are final
                for pid, seconds in cpu.items():
                    if seconds > usage.cpu_by_pid.get(pid, 0.0):
                        usage.cpu_by_pid[pid] = seconds
                usage.peak_rss_bytes = max(usage.peak_rss_bytes, total)
                usage.rss_bytes = now

    def sample_young(self) -> None:
        """Sample the root process of each tree registered less than ``YOUNG_S`` ago."""
        with self._lock:
            now = time.monotonic()
            for root, usage in self._trees.items():
                if now - usage.added >= YOUNG_S:
                    continue
                cpu = _cpu_seconds(root)
                if cpu is None:
                    continue
                if cpu > usage.cpu_by_pid.get(root, 0.0):
                    usage.cpu_by_pid[root] = cpu
                peak, rss = _rss(root)
                usage.peak_rss_bytes = max(usage.peak_rss_bytes, peak)
                # the root alone: a floor of the tree's figure (the full pass sets it)
                usage.rss_bytes = max(usage.rss_bytes, rss)

    def _loop(self) -> None:
        block_stop_signals()
        tick = min(YOUNG_TICK_S, self.interval)
        last_full = time.monotonic()
        while not self._stop.wait(tick):
            if time.monotonic() - last_full >= self.interval:
                last_full = time.monotonic()
                self.sample()
            else:
                self.sample_young()
