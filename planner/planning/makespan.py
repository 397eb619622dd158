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

import functools
import heapq
import itertools
import math
import operator
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


@functools.lru_cache(maxsize=4)
def _prepare(
    durations: tuple[tuple[float, ...], ...],
) -> tuple[list[int], list[float], list[list[int]], list[list[int]]]:
    """The tasks of the steps (in rank order) sorted for :func:`schedule_graph`.

    Every task has a global id (steps in rank order, then task index). Among the ready
    tasks the one with the smallest key (-duration, id) goes first: the longest, ties to
    the earlier step, then to the earlier task. Returns ``first`` (the first id of each
    step, and the total), ``dur`` (by id), ``order`` (per step, its ids longest first,
    stable) and ``closes`` (per step, per task in its order: -1, but the step's rank for
    its last task). Cached: a plan schedules the same durations at many slot counts, and
    the callers only read the result.
    """
    first = [0] * (len(durations) + 1)
    dur: list[float] = []
    order: list[list[int]] = []
    for r, own in enumerate(durations):
        base = first[r] = len(dur)
        dur += own
        longest = sorted(range(len(own)), key=own.__getitem__, reverse=True)
        order.append(list(map(base.__add__, longest)))
    first[-1] = len(dur)
    closes = [[-1] * (len(ids) - 1) + [r] if ids else [] for r, ids in enumerate(order)]
    return first, dur, order, closes


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
    first, dur, order, closes = _prepare(
        tuple(tuple(map(float, durations.get(s, ()))) for s in steps)
    )
    slot = [0] * len(dur)
    start = [0.0] * len(dur)
    ready_at: dict[str, float] = {}
    finish: dict[str, float] = {}
    future: list[tuple[float, int, str]] = []  # steps whose dependencies are all placed
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
    replace = heapq.heapreplace
    neg = operator.neg
    # the unplaced tasks of ready steps, in order: (key..., ready time, rank if last)
    queue: list[tuple[float, int, float, int]] = []
    q = 0  # queue[q:] is still to place, in order
    while future or q < len(queue):
        t0 = free[0][0]
        if q == len(queue):
            t0 = max(t0, future[0][0])
        joined: list[tuple[float, int, float, int]] = []
        while future and future[0][0] <= t0:
            at, r, s = heapq.heappop(future)
            ready_at[s] = at
            if not order[r]:
                placed(s, at)
                continue
            ids = order[r]
            joined += zip(map(neg, map(dur.__getitem__, ids)), ids, itertools.repeat(at), closes[r])
        if joined:  # each step's run is sorted: timsort merges the runs in linear time
            queue = sorted(queue[q:] + joined if q < len(queue) else joined)
            q = 0
        if q == len(queue):
            continue
        # place the queue in order until a step becomes ready (it may hold longer tasks)
        upto, pending = q, itertools.islice(queue, q, None)
        if not future:  # nothing can become ready before a step is placed
            for upto, (key, g, ready, closing) in enumerate(pending, q + 1):  # noqa: B007
                at, k = free[0]
                begin = at if at > ready else ready
                replace(free, (begin - key, k))
                slot[g] = k
                start[g] = begin
                if closing >= 0:  # the step's last task: its dependents may become ready
                    a, b = first[closing], first[closing + 1]
                    placed(steps[closing], max(0.0, *map(operator.add, start[a:b], dur[a:b])))
                    break
            q = upto
            continue
        due = future[0][0]
        for upto, (key, g, ready, closing) in enumerate(pending, q + 1):  # noqa: B007 (read below)
            at, k = free[0]
            begin = at if at > ready else ready
            replace(free, (begin - key, k))
            slot[g] = k
            start[g] = begin
            if closing >= 0:  # the step's last task: it is placed
                a, b = first[closing], first[closing + 1]
                placed(steps[closing], max(0.0, *map(operator.add, start[a:b], dur[a:b])))
                due = future[0][0] if future else math.inf
            if free[0][0] >= due:
                break
        q = upto
    slot_of = {s: tuple(slot[first[r] : first[r + 1]]) for r, s in enumerate(steps)}
    start_of = {s: tuple(start[first[r] : first[r + 1]]) for r, s in enumerate(steps)}
    makespan = max(finish.values(), default=0.0)
    return GraphSchedule(
        makespan=makespan,
        ready=ready_at,
        finish=finish,
        slot=slot_of,
        start=start_of,
    )
