"""How many tasks run at once: what fits the CPU and memory, and what other counts would give.

``auto`` is the largest count that fits the CPU, the memory and the run's shape:

- CPU: the spare cores (``cores - 1``, at least 1) divided by the cores one task keeps busy
  (its measured CPU seconds per wall second, :func:`run_cpu_share`): a task that waits on a
  remote service 92 % of its time uses 0.08 core, so 13 of them fit one spare core. With no
  measurement a task counts as one core: ``cores - 1``;
- memory: ``free x 0.8 / peak memory per task``;
- the run: never more than the most tasks that can run at once (:func:`most_at_once`:
  more slots cannot help), nor :func:`ceiling` (8 per core, at least 16).

A fixed count is kept, with a warning for each resource it does not fit. :func:`what_if`
predicts the run at other counts, with the same CPU and memory fits.

Contention (:mod:`planner.planning.contention`): where the history shows how the tasks of
the step that dominates the run slow down at higher counts, ``auto`` never goes past that
step's knee; and the run at each count is scheduled with every task's duration stretched
to that count (``durations`` may be a function of the count: ``count -> {step:
durations}``).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from planner.graph import topological_order
from planner.planning.makespan import schedule_graph
from planner.planning.model import WhatIf

__all__ = [
    "MEMORY_SHARE",
    "MIN_CEILING",
    "MIN_CPU_SHARE",
    "TASKS_PER_CORE",
    "ConcurrencyChoice",
    "Durations",
    "adaptive_range",
    "ceiling",
    "choose_concurrency",
    "cpu_limit",
    "durations_at",
    "makespan_at",
    "memory_limit",
    "most_at_once",
    "run_cpu_share",
    "smallest_fitting",
    "what_if",
    "what_if_counts",
]

#: The share of free memory planner lets its tasks use.
MEMORY_SHARE = 0.8
#: The least CPU a task is counted for (cores per task): even a task that only waits
#: costs its start, its process tree and the runner's bookkeeping.
MIN_CPU_SHARE = 0.01
#: ``auto`` runs at most this many tasks per core ...
TASKS_PER_CORE = 8
#: ... and its ceiling is never below this (a small machine waiting on remote services).
MIN_CEILING = 16


@dataclass(frozen=True)
class ConcurrencyChoice:
    """The chosen count, the rule that chose it, and warnings about what does not fit.

    ``cpu_limit`` / ``memory_limit``: the counts the CPU and the memory hold (``None``:
    memory unknown); ``cpu_per_task``: the CPU share they were computed with (``None``:
    one core per task); ``widest``: the most tasks that can run at once; ``ceiling``: the
    sane top of ``auto``; ``auto``: what ``auto`` gives on this machine (for a fixed count
    too: the advice of its warnings).
    """

    concurrency: int
    rule: str
    cpu_limit: int
    memory_limit: int | None
    warnings: tuple[str, ...] = ()
    cpu_per_task: float | None = None
    widest: int | None = None
    ceiling: int | None = None
    auto: int | None = None
    #: ``(step, knee)``: the dominant step's knee that ``auto`` keeps within (``None``:
    #: no contention curve for it, today's rule).
    contention: tuple[str, int] | None = None


#: Durations per step, fixed or as a function of the count (stretched by contention).
Durations = Mapping[str, Sequence[float]] | Callable[[int], Mapping[str, Sequence[float]]]


def durations_at(durations: Durations, count: int) -> Mapping[str, Sequence[float]]:
    """The durations per step at ``count`` tasks at once."""
    return durations(count) if callable(durations) else durations


def _spare_cores(cpu_count: int | None) -> int:
    return max(1, (cpu_count or 1) - 1)


def cpu_limit(cpu_count: int | None, cpu_per_task: float | None = None) -> int:
    """``floor(spare cores / cpu_per_task)``, at least 1, where the spare cores are
    ``cores - 1`` (at least 1; 1 when the count is unknown) and ``cpu_per_task`` is at
    least :data:`MIN_CPU_SHARE`. Unknown ``cpu_per_task``: one core per task,
    ``cores - 1``."""
    spare = _spare_cores(cpu_count)
    if cpu_per_task is None:
        return spare
    share = max(MIN_CPU_SHARE, cpu_per_task)
    return max(1, math.floor(spare / share + 1e-9))


def ceiling(cpu_count: int | None) -> int:
    """The most tasks ``auto`` ever runs: :data:`TASKS_PER_CORE` per core, at least
    :data:`MIN_CEILING` (beyond it, processes, file handles and the services they call
    become the limit, which no CPU figure sees)."""
    return max(MIN_CEILING, TASKS_PER_CORE * (cpu_count or 1))


def adaptive_range(
    low: int | None, high: int | None, cpu_count: int | None, memory_fit: int | None
) -> tuple[int, int]:
    """``(min, ceiling)`` of an adaptive limit: ``low`` (default 1) to ``high`` (default
    :func:`ceiling`), never above ``memory_fit`` (tasks that fit the free memory)."""
    top = high or ceiling(cpu_count)
    if memory_fit is not None:
        top = min(top, memory_fit)
    bottom = min(low or 1, top)
    return bottom, max(top, bottom)


def memory_limit(free_memory_mb: float | None, peak_mb_per_task: float | None) -> int | None:
    """``floor(free x 0.8 / peak)``, at least 1; ``None`` when either figure is unknown."""
    if not free_memory_mb or not peak_mb_per_task or peak_mb_per_task <= 0:
        return None
    return max(1, math.floor(free_memory_mb * MEMORY_SHARE / peak_mb_per_task))


def run_cpu_share(shares: Iterable[float | None], seconds: Iterable[float]) -> float | None:
    """The cores one task of the run keeps busy: the tasks' CPU shares weighted by their
    predicted seconds (a task of unknown share counts as one core); ``None`` when no task's
    share is known.

    The run has one limit, so one figure: this one is the run's CPU seconds per second of
    a busy slot, hence ``slots x share`` is the CPU the run draws on average. The largest
    share of any step would be safer for a long step that computes beside long steps that
    wait, but it would let a short step that computes (one aggregate task at 1.0 core) hold
    a run of hundreds of waiting tasks to ``cores - 1`` slots for hours, to protect a
    minute. (With no predicted seconds at all: the plain mean.)
    """
    given = list(shares)
    weights = list(seconds)
    if len(given) != len(weights):
        raise ValueError(f"{len(given)} shares but {len(weights)} durations")
    if given.count(None) == len(given):
        return None
    # (a task of unknown share counts as one core; a negative duration as none)
    if None in given:
        given = [1.0 if c is None else c for c in given]
    known = cast("list[float]", given)
    if min(weights) < 0:
        weights = [w if w > 0 else 0.0 for w in weights]
    total = sum(weights)
    if total <= 0:
        return sum(known) / len(known)
    return float(sum(map(operator.mul, known, weights))) / total


def most_at_once(deps: Mapping[str, Sequence[str]], tasks: Mapping[str, int]) -> int:
    """The most tasks that can ever run at the same time (at least 1).

    Tasks of two steps of which one depends on the other (directly or through other steps)
    never overlap; any other tasks may. The answer is therefore the heaviest set of steps
    none of which depends on another, weighted by task counts (the widest antichain, which
    may span several levels: a one-task step ``A``, then ``C`` (8 tasks) after it, beside
    ``B`` (8 tasks): 16 can run at once, though no level holds more than 9). By Dilworth's
    theorem (weighted) it is the total of tasks minus a maximum flow in which each step
    passes its tasks' count on to the steps after it.
    """
    weight = {s: max(0, tasks.get(s, 0)) for s in deps}
    before: dict[str, set[str]] = {}
    for s in topological_order(deps):
        found: set[str] = set()
        for d in deps[s]:
            if d in weight:
                found.add(d)
                found |= before[d]
        before[s] = found
    after: dict[str, list[str]] = {s: [] for s in deps}
    for s, earlier in before.items():
        if weight[s]:
            for d in earlier:
                if weight[d]:
                    after[d].append(s)
    supply = dict(weight)  # what each step may still pass on (left side)
    demand = dict(weight)  # what each step may still take in (right side)
    flow: dict[tuple[str, str], int] = {}
    passed = 0
    while True:  # augmenting paths, shortest first (Edmonds-Karp)
        came: dict[str, tuple[str, str | None]] = {}  # right node -> (left node, previous)
        seen_left = {u for u in deps if supply[u] > 0 and after[u]}
        queue: deque[tuple[str, str | None]] = deque((u, None) for u in seen_left)
        end: str | None = None
        while queue and end is None:
            u, prev = queue.popleft()
            for v in after[u]:
                if v in came:
                    continue
                came[v] = (u, prev)
                if demand[v] > 0:
                    end = v
                    break
                for w in before[v]:  # send back along a used link w -> v
                    if flow.get((w, v), 0) > 0 and w not in seen_left:
                        seen_left.add(w)
                        queue.append((w, v))
        if end is None:
            break
        path: list[tuple[str, str]] = []
        v2: str | None = end
        while v2 is not None:
            u, prev = came[v2]
            path.append((u, v2))
            v2 = prev
        first = path[-1][0]
        amount = min(supply[first], demand[end])
        # the used links the path sends back along: left node k to the right node it was
        # reached from
        backs = [(path[k][0], path[k + 1][1]) for k in range(len(path) - 1)]
        for u, v in backs:
            amount = min(amount, flow[(u, v)])
        for u, v in path:
            flow[(u, v)] = flow.get((u, v), 0) + amount
        for u, v in backs:
            flow[(u, v)] -= amount
        supply[first] -= amount
        demand[end] -= amount
        passed += amount
    return max(1, sum(weight.values()) - passed)


def choose_concurrency(
    setting: int | str,
    *,
    cpu_count: int | None,
    free_memory_mb: float | None,
    peak_mb_per_task: float | None,
    cpu_per_task: float | None = None,
    widest: int | None = None,
    knee: tuple[str, int] | None = None,
) -> ConcurrencyChoice:
    """The concurrency for ``setting`` (an int, or ``"auto"``) on this machine.

    ``knee``: ``(step, count)``, the knee of the step that dominates the run
    (:func:`~planner.planning.contention.dominant_knee`), which ``auto`` never exceeds.

    ``cpu_per_task``: the cores one task keeps busy (:func:`run_cpu_share`; ``None``: one);
    ``widest``: the most tasks that can run at once (:func:`most_at_once`), which ``auto``
    never exceeds. A fixed count is kept, with a warning for the CPU or the memory it
    exceeds.
    """
    by_cpu = cpu_limit(cpu_count, cpu_per_task)
    by_mem = memory_limit(free_memory_mb, peak_mb_per_task)
    top = ceiling(cpu_count)
    auto = min(by_cpu, top, *(x for x in (by_mem, widest) if x is not None and x >= 1))
    knee_text = None
    if knee is not None:
        knee_text = f"step {knee[0]} stops gaining past {knee[1]} at once (its contention)"
        auto = min(auto, max(1, knee[1]))
    mem_text = (
        f"memory {free_memory_mb:.0f} MB free x {MEMORY_SHARE:g} / {peak_mb_per_task:.0f} MB "
        f"per task = {by_mem}"
        if by_mem is not None and free_memory_mb and peak_mb_per_task
        else "memory: no peak memory known per task, not limited"
    )
    spare = _spare_cores(cpu_count)
    cores = f"{cpu_count} cores - 1 = {spare}" if cpu_count else f"cores unknown: {spare}"
    if cpu_per_task is None:
        cpu_text = f"CPU {cores} (no CPU use measured: one core per task)"
    else:
        share = max(MIN_CPU_SHARE, cpu_per_task)
        core_word = "core" if spare == 1 else "cores"
        cpu_text = f"CPU {cores} spare {core_word} / {share:.2g} core per task = {by_cpu}"
    if setting == "auto":
        parts = [cpu_text]
        if by_cpu > top:
            parts.append(f"ceiling {top} ({TASKS_PER_CORE} per core, at least {MIN_CEILING})")
        parts.append(mem_text)
        if widest is not None:
            parts.append(f"at most {widest} tasks can run at once")
        if knee_text is not None:
            parts.append(knee_text)
        rule = f"auto: {'; '.join(parts)} -> {auto}"
        return ConcurrencyChoice(
            auto, rule, by_cpu, by_mem, (), cpu_per_task, widest, top, auto, knee
        )
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
    return ConcurrencyChoice(
        n, f"fixed at {n}", by_cpu, by_mem, tuple(warnings), cpu_per_task, widest, top, auto, knee
    )


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
    durations: Durations,
    count: int,
    memo: dict[int, float] | None = None,
) -> float:
    """The scheduled run at ``count`` slots, remembered in ``memo`` (by count)."""
    if memo is not None and count in memo:
        return memo[count]
    at = durations_at(durations, count)
    if count == 1:  # one slot is never idle: the run is the sum of its tasks
        value = float(sum(sum(at.get(s, ())) for s in deps))
    else:
        value = schedule_graph(deps, at, count).makespan
    if memo is not None:
        memo[count] = value
    return value


def what_if(
    deps: Mapping[str, Sequence[str]],
    durations: Durations,
    counts: Iterable[int],
    *,
    peak_mb_per_task: float | None,
    cpu_count: int | None = None,
    free_memory_mb: float | None = None,
    cpu_per_task: float | None = None,
    memo: dict[int, float] | None = None,
) -> list[WhatIf]:
    """The predicted run (shared-slot schedule) at each count, the memory it needs, and
    whether it fits the CPU (at ``cpu_per_task`` cores per task, as
    :func:`choose_concurrency`) and the memory.

    ``memo``: makespans already computed, by count (filled with the new ones).
    """
    by_cpu = cpu_limit(cpu_count, cpu_per_task)
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
    durations: Durations,
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
    with the count). Durations stretched by contention (a function of the count) are
    never shorter than at one task at a time, so the lower end still holds; past a step's
    peak the makespan rises again, and the search then finds a count that fits, not
    always the smallest.
    """
    from planner.graph import critical_path

    memo = {} if memo is None else memo
    top = max(1, widest)
    alone = durations_at(durations, 1)
    total = sum(sum(alone.get(s, ())) for s in deps)
    chain, _ = critical_path(deps, {s: max(alone.get(s, ()), default=0.0) for s in deps})
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
