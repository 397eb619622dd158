"""How many tasks run at once: what fits the CPU and memory, and what other counts would give.

``auto`` is the largest count that fits both the CPU (``cores - 1``, at least 1) and the
memory (``free x 0.8 / peak memory per task``); a fixed count is kept, with a warning for
each resource it does not fit. :func:`what_if` predicts the run at other counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from planner.planning.makespan import schedule_graph
from planner.planning.model import WhatIf

__all__ = [
    "MEMORY_SHARE",
    "ConcurrencyChoice",
    "choose_concurrency",
    "cpu_limit",
    "makespan_at",
    "memory_limit",
    "smallest_fitting",
    "what_if",
    "what_if_counts",
]

#: The share of free memory planner lets its tasks use.
MEMORY_SHARE = 0.8


@dataclass(frozen=True)
class ConcurrencyChoice:
    """The chosen count, the rule that chose it, and warnings about what does not fit."""

    concurrency: int
    rule: str
    cpu_limit: int
    memory_limit: int | None
    warnings: tuple[str, ...] = ()


def cpu_limit(cpu_count: int | None) -> int:
    """``cores - 1``, at least 1 (1 when the count is unknown)."""
    return max(1, (cpu_count or 1) - 1)


def memory_limit(free_memory_mb: float | None, peak_mb_per_task: float | None) -> int | None:
    """``floor(free x 0.8 / peak)``, at least 1; ``None`` when either figure is unknown."""
    if not free_memory_mb or not peak_mb_per_task or peak_mb_per_task <= 0:
        return None
    return max(1, math.floor(free_memory_mb * MEMORY_SHARE / peak_mb_per_task))


def choose_concurrency(
    setting: int | str,
    *,
    cpu_count: int | None,
    free_memory_mb: float | None,
    peak_mb_per_task: float | None,
) -> ConcurrencyChoice:
    """The concurrency for ``setting`` (an int, or ``"auto"``) on this machine."""
    by_cpu = cpu_limit(cpu_count)
    by_mem = memory_limit(free_memory_mb, peak_mb_per_task)
    mem_text = (
        f"memory {free_memory_mb:.0f} MB free x {MEMORY_SHARE:g} / {peak_mb_per_task:.0f} MB "
        f"per task = {by_mem}"
        if by_mem is not None and free_memory_mb and peak_mb_per_task
        else "memory: no peak memory known per task, not limited"
    )
    cpu_text = f"CPU {cpu_count or 'unknown'} cores - 1 = {by_cpu}"
    if setting == "auto":
        n = min(by_cpu, by_mem) if by_mem is not None else by_cpu
        return ConcurrencyChoice(n, f"auto: {cpu_text}; {mem_text}", by_cpu, by_mem)
    n = int(setting)
    warnings = []
    if n > by_cpu:
        warnings.append(f"concurrency {n} exceeds the CPU fit ({cpu_text})")
    if by_mem is not None and n > by_mem and peak_mb_per_task and free_memory_mb:
        need = n * peak_mb_per_task
        warnings.append(
            f"concurrency {n} needs {need:.0f} MB of memory but {free_memory_mb * MEMORY_SHARE:.0f}"
            f" MB fit ({mem_text})"
        )
    return ConcurrencyChoice(n, f"fixed at {n}", by_cpu, by_mem, tuple(warnings))


def what_if_counts(chosen: int, limits: Iterable[int | None], widest: int) -> list[int]:
    """Counts worth showing: the chosen count, the limits, and powers of two (not within
    15 % of those) up to twice the chosen count or the largest limit, never beyond the
    widest part of the run, where more slots cannot help."""
    known = [x for x in limits if x is not None]
    top = max(1, min(widest, max([2 * chosen, 4, *known])))
    marks = {min(chosen, top), *(x for x in known if x <= top)}
    counts = {1, *marks}
    c = 2
    while c <= top:
        if all(abs(c - m) > 0.15 * m for m in marks):
            counts.add(c)
        c *= 2
    return sorted(counts)


def makespan_at(
    deps: Mapping[str, Sequence[str]],
    durations: Mapping[str, Sequence[float]],
    count: int,
    memo: dict[int, float] | None = None,
) -> float:
    """The scheduled run at ``count`` slots, remembered in ``memo`` (by count)."""
    if memo is not None and count in memo:
        return memo[count]
    if count == 1:  # one slot is never idle: the run is the sum of its tasks
        value = float(sum(sum(durations.get(s, ())) for s in deps))
    else:
        value = schedule_graph(deps, durations, count).makespan
    if memo is not None:
        memo[count] = value
    return value


def what_if(
    deps: Mapping[str, Sequence[str]],
    durations: Mapping[str, Sequence[float]],
    counts: Iterable[int],
    *,
    peak_mb_per_task: float | None,
    cpu_count: int | None = None,
    free_memory_mb: float | None = None,
    memo: dict[int, float] | None = None,
) -> list[WhatIf]:
    """The predicted run (shared-slot schedule) at each count, and the memory it needs.

    ``memo``: makespans already computed, by count (filled with the new ones).
    """
    by_cpu = cpu_limit(cpu_count)
    by_mem = memory_limit(free_memory_mb, peak_mb_per_task)
    rows = []
    for n in counts:
        memory = n * peak_mb_per_task if peak_mb_per_task else None
        rows.append(
            WhatIf(
                concurrency=n,
                makespan_s=makespan_at(deps, durations, n, memo),
                memory_mb=memory,
                fits_cpu=n <= by_cpu,
                fits_memory=by_mem is None or n <= by_mem,
            )
        )
    return rows


def smallest_fitting(
    deps: Mapping[str, Sequence[str]],
    durations: Mapping[str, Sequence[float]],
    limit_s: float,
    widest: int,
    *,
    memo: dict[int, float] | None = None,
) -> int | None:
    """The smallest count whose scheduled run takes at most ``limit_s`` (``None``: none does).

    List scheduling keeps ``total / m <= makespan <= total / m + chain`` (Graham), where
    ``chain`` is the longest chain of tasks through the step graph: the answer lies between
    ``total / limit`` and ``total / (limit - chain)``. A count already in ``memo`` gives the
    first guess (its overhead over ``total / count``), so that usually two schedules settle
    it; else a binary search over the range does (the makespan falls almost monotonically
    with the count).
    """
    from planner.graph import critical_path

    memo = {} if memo is None else memo
    top = max(1, widest)
    total = sum(sum(durations.get(s, ())) for s in deps)
    chain, _ = critical_path(deps, {s: max(durations.get(s, ()), default=0.0) for s in deps})
    if chain > limit_s or limit_s <= 0:
        return None

    def fits(count: int) -> bool:
        return makespan_at(deps, durations, count, memo) <= limit_s

    lo = max(1, min(top, math.ceil(total / limit_s - 1e-9)))
    hi = top if limit_s <= chain else max(lo, min(top, math.ceil(total / (limit_s - chain))))
    if not fits(hi):
        if hi == top or not fits(top):
            return None
        hi = top
    prior = next(((c, m) for c, m in memo.items() if c != hi), None)
    if prior is not None and lo < hi:
        count, makespan = prior
        overhead = max(0.0, makespan - total / max(1, count))
        room = limit_s - overhead
        guess = hi if room <= 0 else max(lo, min(hi, math.ceil(total / room - 1e-9)))
        if fits(guess):
            if guess == lo or not fits(guess - 1):
                return guess
            hi = guess - 1
        else:
            lo = guess + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
