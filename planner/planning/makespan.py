"""List scheduling of tasks onto worker slots.

* :func:`lpt` - one set of independent tasks, longest processing time first (LPT): each
  task goes to the slot that frees first. Graham's bound: at most 4/3 - 1/(3m) of optimal.
* :func:`lower_bound` - ``max(longest task, total / slots)``: no schedule can beat it.
* :func:`round_robin` - task i to slot i mod m, in the given order (for comparison).
* :func:`schedule_graph` - the tasks of a step graph sharing the slots: a step's tasks become
  ready when every step it depends on has finished; among ready tasks the longest goes first
  to the lowest free slot. Steps that can run side by side therefore share the slots.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "GraphSchedule",
    "Schedule",
    "lower_bound",
    "lpt",
    "round_robin",
    "schedule_graph",
]


@dataclass(frozen=True)
class Schedule:
    """Tasks assigned to slots: ``slot[i]`` is where task ``i`` runs, ``start[i]`` when."""

    makespan: float
    slot: tuple[int, ...]
    start: tuple[float, ...]


def lower_bound(durations: Sequence[float], slots: int) -> float:
    """``max(longest, total / slots)``: no assignment to ``slots`` slots finishes sooner."""
    if not durations:
        return 0.0
    longest = max(durations)
    return max(longest, sum(durations) / max(1, slots))


def lpt(durations: Sequence[float], slots: int) -> Schedule:
    """Longest task first, each to the slot that frees first (lowest slot on ties)."""
    slots = max(1, slots)
    order = sorted(range(len(durations)), key=lambda i: (-durations[i], i))
    free = [(0.0, s) for s in range(min(slots, len(durations)) or 1)]
    slot = [0] * len(durations)
    start = [0.0] * len(durations)
    for i in order:
        at, s = heapq.heappop(free)
        slot[i], start[i] = s, at
        heapq.heappush(free, (at + durations[i], s))
    makespan = max((at for at, _ in free), default=0.0)
    return Schedule(makespan, tuple(slot), tuple(start))


def round_robin(durations: Sequence[float], slots: int) -> Schedule:
    """Task ``i`` to slot ``i mod slots`` in the order given; each slot runs its own queue."""
    slots = max(1, slots)
    load = [0.0] * slots
    slot = [0] * len(durations)
    start = [0.0] * len(durations)
    for i, d in enumerate(durations):
        s = i % slots
        slot[i], start[i] = s, load[s]
        load[s] += d
    return Schedule(max(load, default=0.0), tuple(slot), tuple(start))


@dataclass(frozen=True)
class GraphSchedule:
    """The tasks of a step graph on shared slots.

    ``ready[s]``: when step ``s`` could start (its dependencies done); ``finish[s]``: when
    its last task ends; ``slot[s][i]`` / ``start[s][i]``: task ``i`` of step ``s``.
    """

    makespan: float
    ready: Mapping[str, float]
    finish: Mapping[str, float]
    slot: Mapping[str, tuple[int, ...]]
    start: Mapping[str, tuple[float, ...]]

    def span(self, step: str) -> float:
        """How long the step takes from ready to done, queueing behind other steps included."""
        return self.finish[step] - self.ready[step]


def schedule_graph(
    deps: Mapping[str, Sequence[str]],
    durations: Mapping[str, Sequence[float]],
    slots: int,
) -> GraphSchedule:
    """Schedule every step's tasks on ``slots`` shared slots, respecting step dependencies.

    ``deps``: ``{step: [steps it depends on]}`` (only steps in ``deps`` count);
    ``durations``: ``{step: [task durations]}``. A step with no tasks takes no time.

    The same schedule as the event-driven rule "when a slot frees, it takes the longest
    ready task", computed slot by slot: the slot that frees first takes the longest task of
    the steps ready by then (a step is ready when its dependencies' tasks have all finished).
    """
    slots = max(1, slots)
    steps = list(deps)
    rank = {s: r for r, s in enumerate(steps)}
    waiting = {s: sum(1 for d in set(deps[s]) if d in rank) for s in steps}
    dependents: dict[str, list[str]] = {s: [] for s in steps}
    for s in steps:
        for d in set(deps[s]):
            if d in rank:
                dependents[d].append(s)
    dur = {s: [float(x) for x in durations.get(s, ())] for s in steps}
    order = {s: sorted(range(len(dur[s])), key=dur[s].__getitem__, reverse=True) for s in steps}
    left = {s: len(dur[s]) for s in steps}
    ready_at: dict[str, float] = {}
    finish: dict[str, float] = {}
    slot_of = {s: [0] * left[s] for s in steps}
    start_of = {s: [0.0] * left[s] for s in steps}
    future: list[tuple[float, int, str]] = []  # steps whose dependencies are all placed
    pool: list[tuple[float, int, str, int]] = []  # (-next duration, rank, step, position)
    free = [(0.0, k) for k in range(slots)]

    def placed(step: str, end: float) -> None:
        """Every task of ``step`` has a slot: its dependents may now become ready."""
        finish[step] = end
        for nxt in dependents[step]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                at = max((finish[d] for d in deps[nxt] if d in rank), default=0.0)
                heapq.heappush(future, (at, rank[nxt], nxt))

    for s in steps:
        if waiting[s] == 0:
            heapq.heappush(future, (0.0, rank[s], s))
    latest = dict.fromkeys(steps, 0.0)
    replace = heapq.heapreplace
    while future or pool:
        t0 = free[0][0]
        if not pool:
            t0 = max(t0, future[0][0])
        while future and future[0][0] <= t0:
            at, r, s = heapq.heappop(future)
            ready_at[s] = at
            if left[s] == 0:
                placed(s, at)
                continue
            heapq.heappush(pool, (-dur[s][order[s][0]], r, s, 0))
        if not pool:
            continue
        _, r, s, pos = pool[0]
        ord_s, dur_s, slot_s, start_s = order[s], dur[s], slot_of[s], start_of[s]
        ready, last, n = ready_at[s], latest[s], len(ord_s)
        alone = len(pool) == 1
        while True:  # place tasks of s while it stays the best ready step
            at, k = free[0]
            i = ord_s[pos]
            begin = at if at > ready else ready
            end = begin + dur_s[i]
            replace(free, (end, k))
            slot_s[i], start_s[i] = k, begin
            if end > last:  # noqa: PLR1730 (hot loop: cheaper than max)
                last = end
            pos += 1
            if pos == n:
                heapq.heappop(pool)
                latest[s] = last
                placed(s, last)
                break
            if not alone or (future and future[0][0] <= free[0][0]):
                replace(pool, (-dur_s[ord_s[pos]], r, s, pos))
                latest[s] = last
                break
    makespan = max(finish.values(), default=0.0)
    return GraphSchedule(
        makespan=makespan,
        ready=ready_at,
        finish=finish,
        slot={s: tuple(v) for s, v in slot_of.items()},
        start={s: tuple(v) for s, v in start_of.items()},
    )
