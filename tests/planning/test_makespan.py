"""LPT, the lower bound, round-robin and the shared-slot graph schedule."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.planning.makespan import lower_bound, lpt, round_robin, schedule_graph


def brute_force(durations: list[float], slots: int) -> float:
    """The optimal makespan by trying every assignment."""
    best = float("inf")
    for assignment in itertools.product(range(slots), repeat=len(durations)):
        loads = [0.0] * slots
        for d, s in zip(durations, assignment, strict=True):
            loads[s] += d
        best = min(best, max(loads))
    return best


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=7),
    st.integers(min_value=1, max_value=4),
)
def test_lpt_within_graham_bound_of_optimal(durations: list[int], slots: int) -> None:
    tasks = [float(d) for d in durations]
    opt = brute_force(tasks, slots)
    got = lpt(tasks, slots).makespan
    assert got >= opt - 1e-9
    assert got <= (4 / 3 - 1 / (3 * slots)) * opt + 1e-9
    assert lower_bound(tasks, slots) <= opt + 1e-9


def test_lpt_known_case_and_assignment_is_consistent() -> None:
    tasks = [3.0, 3.0, 2.0, 2.0, 2.0]  # optimum 6 (3+3 | 2+2+2); LPT gives 7
    sched = lpt(tasks, 2)
    assert sched.makespan == 7.0
    assert brute_force(tasks, 2) == 6.0
    loads = [0.0, 0.0]
    for i, d in enumerate(tasks):
        loads[sched.slot[i]] += d
    assert max(loads) == sched.makespan


def test_lower_bound_is_longest_or_average() -> None:
    assert lower_bound([10.0, 1.0, 1.0], 3) == 10.0
    assert lower_bound([4.0, 4.0, 4.0, 4.0], 2) == 8.0
    assert lower_bound([], 4) == 0.0


def test_lpt_beats_round_robin_on_heavy_tail() -> None:
    rng = random.Random(7)
    tasks = [rng.paretovariate(1.5) for _ in range(2000)]
    good = lpt(tasks, 16).makespan
    bad = round_robin(tasks, 16).makespan
    lb = lower_bound(tasks, 16)
    assert good / lb <= 1.05
    assert bad > good


def test_graph_schedule_respects_dependencies_and_slots() -> None:
    deps = {"a": [], "b": [], "c": ["a", "b"]}
    durations = {"a": [3.0, 3.0], "b": [2.0], "c": [1.0, 1.0, 1.0]}
    sched = schedule_graph(deps, durations, 2)
    # a and b share the two slots: b waits for a slot, so c is ready at 5
    assert sched.ready["c"] == 5.0
    assert min(sched.start["c"]) >= max(sched.finish["a"], sched.finish["b"])
    assert sched.makespan == 7.0
    intervals: dict[int, list[tuple[float, float]]] = {}
    for step, times in sched.start.items():
        for i, begin in enumerate(times):
            intervals.setdefault(sched.slot[step][i], []).append(
                (begin, begin + durations[step][i])
            )
    for spans in intervals.values():
        spans.sort()
        for (_, end), (begin, _) in itertools.pairwise(spans):
            assert begin >= end - 1e-9


@pytest.mark.parametrize("slots", [1, 2, 5])
def test_graph_schedule_of_one_step_is_lpt(slots: int) -> None:
    rng = random.Random(slots)
    tasks = [rng.uniform(1, 100) for _ in range(40)]
    assert schedule_graph({"s": []}, {"s": tasks}, slots).makespan == pytest.approx(
        lpt(tasks, slots).makespan
    )


def test_graph_schedule_empty_step_takes_no_time() -> None:
    sched = schedule_graph({"a": [], "b": ["a"], "c": ["b"]}, {"a": [5.0], "c": [2.0]}, 3)
    assert sched.finish["b"] == 5.0
    assert sched.makespan == 7.0


@st.composite
def step_graphs(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, list[float]], int]:
    n = draw(st.integers(min_value=1, max_value=6))
    names = [f"s{i}" for i in range(n)]
    deps = {name: [d for d in names[:i] if draw(st.booleans())] for i, name in enumerate(names)}
    durations = {
        name: draw(st.lists(st.floats(min_value=0.1, max_value=100), min_size=0, max_size=8))
        for name in names
    }
    return deps, durations, draw(st.integers(min_value=1, max_value=5))


@settings(max_examples=200, deadline=None)
@given(step_graphs())
def test_graph_schedule_is_valid_and_within_graham(
    case: tuple[dict[str, list[str]], dict[str, list[float]], int],
) -> None:
    from planner.graph import critical_path

    deps, durations, slots = case
    sched = schedule_graph(deps, durations, slots)
    busy: dict[int, list[tuple[float, float]]] = {}
    for step, times in sched.start.items():
        for i, begin in enumerate(times):
            end = begin + durations[step][i]
            assert begin >= max((sched.finish[d] for d in deps[step]), default=0.0) - 1e-9
            assert end <= sched.finish[step] + 1e-9
            busy.setdefault(sched.slot[step][i], []).append((begin, end))
    for spans in busy.values():
        spans.sort()
        for (_, end), (begin, _) in itertools.pairwise(spans):
            assert begin >= end - 1e-9
    total = sum(sum(d) for d in durations.values())
    chain, _ = critical_path(deps, {s: max(d, default=0.0) for s, d in durations.items()})
    assert sched.makespan >= max(chain, total / slots) - 1e-9
    assert sched.makespan <= total / slots + chain + 1e-9  # Graham's list-scheduling bound
