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
    """
    slots = max(1, slots)
    steps = list(deps)
    waiting = {s: {d for d in deps[s] if d in deps} for s in steps}
    dependents: dict[str, list[str]] = {s: [] for s in steps}
    for s in steps:
        for d in waiting[s]:
            dependents[d].append(s)
    left = {s: len(durations.get(s, ())) for s in steps}
    ready_at: dict[str, float] = {}
    finish: dict[str, float] = {}
    slot_of = {s: [0] * left[s] for s in steps}
    start_of = {s: [0.0] * left[s] for s in steps}
    queue: list[tuple[float, int, int, str]] = []  # (-duration, step rank, task index, step)
    rank = {s: r for r, s in enumerate(steps)}
    free = list(range(slots))
    running: list[tuple[float, int, str]] = []  # (finish time, slot, step)
    now = 0.0

    def release(step: str) -> None:
        ready_at[step] = now
        if left[step] == 0:
            done(step)
            return
        for i, d in enumerate(durations[step]):
            heapq.heappush(queue, (-float(d), rank[step], i, step))

    def done(step: str) -> None:
        finish[step] = now
        for nxt in dependents[step]:
            waiting[nxt].discard(step)
            if not waiting[nxt]:
                release(nxt)

    for first in steps:
        if not waiting[first] and first not in ready_at:
            release(first)
    while queue or running:
        while queue and free:
            neg, _, i, step = heapq.heappop(queue)
            k = heapq.heappop(free)
            slot_of[step][i], start_of[step][i] = k, now
            heapq.heappush(running, (now - neg, k, step))
        end, k, step = heapq.heappop(running)
        now = end
        heapq.heappush(free, k)
        left[step] -= 1
        if left[step] == 0:
            done(step)
    makespan = max(finish.values(), default=0.0)
    return GraphSchedule(
        makespan=makespan,
        ready=ready_at,
        finish=finish,
        slot={s: tuple(v) for s, v in slot_of.items()},
        start={s: tuple(v) for s, v in start_of.items()},
    )
