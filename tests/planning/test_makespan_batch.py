"""schedule_graph against the previous implementation (the plans must not change) and
against a naive one-task-at-a-time statement of the rule: the same schedule, task by task."""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.planning.makespan import schedule_graph


def reference_schedule(
    deps: Mapping[str, Sequence[str]],
    durations: Mapping[str, Sequence[float]],
    slots: int,
) -> tuple[dict[str, float], dict[str, float], dict[str, list[int]], dict[str, list[float]]]:
    """The scheduler as it was before the batch rewrite (a pool of steps), verbatim."""
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
    return ready_at, finish, slot_of, start_of


def naive_schedule(
    deps: Mapping[str, Sequence[str]],
    durations: Mapping[str, Sequence[float]],
    slots: int,
) -> tuple[dict[str, float], dict[str, float], dict[str, list[int]], dict[str, list[float]]]:
    """The documented rule, one task at a time and nothing cached: an oracle independent of
    both implementations. The slot that frees first (lowest slot on ties) takes the longest
    task (ties: earlier step, then earlier task) of the steps ready by then, or, when none
    is, of the steps ready soonest after; a step is ready when its dependencies' tasks have
    all been placed and have finished, and finishes when its last task ends."""
    slots = max(1, slots)
    steps = list(deps)
    rank = {s: r for r, s in enumerate(steps)}
    need = {s: [d for d in deps[s] if d in rank] for s in steps}
    dur = {s: [float(x) for x in durations.get(s, ())] for s in steps}
    left = {s: list(range(len(dur[s]))) for s in steps}
    free = [0.0] * slots
    ready: dict[str, float] = {}
    finish: dict[str, float] = {}
    slot_of = {s: [0] * len(dur[s]) for s in steps}
    start_of = {s: [0.0] * len(dur[s]) for s in steps}
    while len(finish) < len(steps):
        for s in steps:
            if s not in ready and all(d in finish for d in need[s]):
                ready[s] = max((finish[d] for d in need[s]), default=0.0)
                if not dur[s]:
                    finish[s] = ready[s]
        open_steps = [s for s in ready if s not in finish]
        if not open_steps:
            continue
        k = min(range(slots), key=lambda j: (free[j], j))
        t = free[k]
        if all(ready[s] > t for s in open_steps):
            t = min(ready[s] for s in open_steps)
        s, i = min(
            ((s, i) for s in open_steps if ready[s] <= t for i in left[s]),
            key=lambda p: (-dur[p[0]][p[1]], rank[p[0]], p[1]),
        )
        begin = max(free[k], ready[s])
        free[k] = begin + dur[s][i]
        slot_of[s][i], start_of[s][i] = k, begin
        left[s].remove(i)
        if not left[s]:
            finish[s] = max(0.0, *(b + d for b, d in zip(start_of[s], dur[s], strict=True)))
    return ready, finish, slot_of, start_of


@st.composite
def graphs(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, list[float]], int]:
    n = draw(st.integers(min_value=1, max_value=7))
    names = [f"s{i}" for i in range(n)]
    deps = {name: [d for d in names[:i] if draw(st.booleans())] for i, name in enumerate(names)}
    # small integers: many ties, zeros, steps with no task
    durations = {
        name: [float(x) for x in draw(st.lists(st.integers(0, 6), min_size=0, max_size=12))]
        for name in names
    }
    return deps, durations, draw(st.integers(min_value=1, max_value=6))


def _check(deps: dict[str, list[str]], durations: dict[str, list[float]], slots: int) -> None:
    ready, finish, slot, start = reference_schedule(deps, durations, slots)
    assert naive_schedule(deps, durations, slots) == (ready, finish, slot, start)
    got = schedule_graph(deps, durations, slots)
    assert dict(got.ready) == ready
    assert dict(got.finish) == finish
    assert {s: list(v) for s, v in got.slot.items()} == slot
    assert {s: list(v) for s, v in got.start.items()} == start
    assert got.makespan == max(finish.values(), default=0.0)


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_same_schedule_as_before_with_ties(
    case: tuple[dict[str, list[str]], dict[str, list[float]], int],
) -> None:
    _check(*case)


@pytest.mark.parametrize("slots", [1, 3, 15, 64])
def test_same_schedule_as_before_on_a_large_plan(slots: int) -> None:
    rng = random.Random(slots)
    deps = {str(i): [str(i - 1)] if i % 5 else [] for i in range(20)}
    durations = {s: [rng.lognormvariate(4, 1.2) for _ in range(300)] for s in deps}
    _check(deps, durations, slots)
    _check(deps, durations, slots)  # again, from the cache of sorted tasks
