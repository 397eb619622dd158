"""Concurrency: auto within CPU and memory, fixed with warnings, what-if."""

from __future__ import annotations

import pytest

from planner.planning.concurrency import choose_concurrency, what_if, what_if_counts


def test_auto_is_limited_by_cpu() -> None:
    c = choose_concurrency("auto", cpu_count=8, free_memory_mb=64000, peak_mb_per_task=100)
    assert c.concurrency == 7
    assert c.cpu_limit == 7
    assert "cores - 1 = 7" in c.rule


def test_auto_is_limited_by_memory() -> None:
    # 10 GB free x 0.8 / 3 GB per task = 2.67 -> 2
    c = choose_concurrency("auto", cpu_count=16, free_memory_mb=10000, peak_mb_per_task=3000)
    assert c.concurrency == 2
    assert c.memory_limit == 2


def test_auto_at_least_one() -> None:
    c = choose_concurrency("auto", cpu_count=1, free_memory_mb=100, peak_mb_per_task=5000)
    assert c.concurrency == 1


def test_auto_without_memory_figures_uses_cpu_only() -> None:
    c = choose_concurrency("auto", cpu_count=4, free_memory_mb=None, peak_mb_per_task=None)
    assert c.concurrency == 3
    assert c.memory_limit is None


def test_fixed_is_kept_with_warnings() -> None:
    c = choose_concurrency(12, cpu_count=4, free_memory_mb=10000, peak_mb_per_task=1000)
    assert c.concurrency == 12
    assert len(c.warnings) == 2
    assert "CPU" in c.warnings[0]
    assert "12000 MB" in c.warnings[1]


def test_fixed_that_fits_has_no_warning() -> None:
    c = choose_concurrency(2, cpu_count=4, free_memory_mb=10000, peak_mb_per_task=1000)
    assert c.warnings == ()


def test_what_if_makespan_falls_and_memory_grows() -> None:
    deps = {"s": []}
    durations = {"s": [10.0] * 8}
    rows = what_if(
        deps, durations, [1, 2, 4, 8], peak_mb_per_task=500, cpu_count=5, free_memory_mb=2000
    )
    assert [r.makespan_s for r in rows] == [80.0, 40.0, 20.0, 10.0]
    assert [r.memory_mb for r in rows] == [500, 1000, 2000, 4000]
    assert [r.fits_cpu for r in rows] == [True, True, True, False]
    assert [r.fits_memory for r in rows] == [True, True, False, False]  # 2000 x 0.8 / 500 = 3


def test_what_if_counts_include_chosen_and_limits() -> None:
    counts = what_if_counts(6, [7, 20], 100)
    assert {1, 6, 7, 20}.issubset(counts)
    assert max(counts) <= 100
    assert what_if_counts(6, [7], 3) == [1, 2, 3]
    assert 16 not in what_if_counts(15, [15], 100)  # too close to the chosen 15


def test_smallest_fitting_matches_a_scan() -> None:
    import random

    from planner.planning.concurrency import smallest_fitting
    from planner.planning.makespan import schedule_graph

    rng = random.Random(5)
    deps = {"a": [], "b": ["a"], "c": [], "d": ["b", "c"]}
    for _ in range(30):
        durations = {s: [rng.lognormvariate(3, 1) for _ in range(rng.randint(1, 40))] for s in deps}
        one = schedule_graph(deps, durations, 1).makespan
        limit = one * rng.uniform(0.05, 1.1)
        known = rng.randint(1, 40)
        memo = {known: schedule_graph(deps, durations, known).makespan}
        got = smallest_fitting(deps, durations, limit, 80, memo=memo)
        fitting = [c for c in range(1, 81) if schedule_graph(deps, durations, c).makespan <= limit]
        if not fitting:
            assert got is None
            continue
        assert got is not None
        assert schedule_graph(deps, durations, got).makespan <= limit
        assert got == 1 or schedule_graph(deps, durations, got - 1).makespan > limit
        assert got == min(fitting)  # these graphs are monotone enough


def test_smallest_fitting_without_a_prior_schedule() -> None:
    """No memo, or one holding only the upper end of the range: a plain binary search
    (this once raised StopIteration looking for a first guess)."""
    from planner.planning.concurrency import smallest_fitting
    from planner.planning.makespan import schedule_graph

    deps: dict[str, list[str]] = {"a": []}
    durations = {"a": [10.0] * 100}
    assert smallest_fitting(deps, durations, 100.0, 100) == 10
    memo = {10: schedule_graph(deps, durations, 10).makespan}
    assert smallest_fitting(deps, durations, 100.0, 100, memo=memo) == 10
    assert smallest_fitting(deps, durations, 95.0, 100) == 12  # 9 rounds of 10 s
    assert smallest_fitting(deps, durations, 5.0, 100) is None


# -- the CPU fit at the tasks' measured CPU use ---------------------------------------------


def test_cpu_bound_tasks_keep_cores_minus_one() -> None:
    c = choose_concurrency(
        "auto", cpu_count=8, free_memory_mb=64000, peak_mb_per_task=100, cpu_per_task=1.0
    )
    assert c.concurrency == c.cpu_limit == 7
    assert "CPU 8 cores - 1 = 7 spare cores / 1 core per task = 7" in c.rule


def test_waiting_tasks_fit_many_to_a_spare_core() -> None:
    """The user's case: 0.06 CPU s per 0.8 s wall on 2 cores."""
    c = choose_concurrency(
        "auto", cpu_count=2, free_memory_mb=20000, peak_mb_per_task=45, cpu_per_task=0.075
    )
    assert c.cpu_limit == 13  # floor(1 / 0.075)
    assert c.concurrency == 13
    assert c.rule == (
        "auto: CPU 2 cores - 1 = 1 spare core / 0.075 core per task = 13; memory 20000 MB "
        "free x 0.8 / 45 MB per task = 355 -> 13"
    )


def test_auto_never_exceeds_the_tasks_that_can_run_at_once() -> None:
    c = choose_concurrency(
        "auto",
        cpu_count=2,
        free_memory_mb=20000,
        peak_mb_per_task=45,
        cpu_per_task=0.075,
        widest=8,
    )
    assert c.concurrency == 8 and c.cpu_limit == 13 and c.widest == 8
    assert c.rule.endswith("; at most 8 tasks can run at once -> 8")


def test_memory_wins_over_a_generous_cpu_fit() -> None:
    c = choose_concurrency(
        "auto", cpu_count=2, free_memory_mb=1000, peak_mb_per_task=200, cpu_per_task=0.075
    )
    assert c.concurrency == c.memory_limit == 4  # 1000 x 0.8 / 200


def test_auto_has_a_ceiling_per_core() -> None:
    from planner.planning.concurrency import MIN_CEILING, TASKS_PER_CORE, ceiling

    # a task that only sleeps: counted at the least share (0.01 core): 100 per spare core
    c = choose_concurrency(
        "auto", cpu_count=2, free_memory_mb=None, peak_mb_per_task=None, cpu_per_task=0.001
    )
    assert c.cpu_limit == 100
    assert c.concurrency == MIN_CEILING == 16
    assert "ceiling 16 (8 per core, at least 16)" in c.rule
    assert ceiling(4) == 4 * TASKS_PER_CORE == 32
    assert ceiling(None) == MIN_CEILING


def test_tasks_using_several_cores_get_fewer_slots() -> None:
    c = choose_concurrency(
        "auto", cpu_count=8, free_memory_mb=None, peak_mb_per_task=None, cpu_per_task=2.0
    )
    assert c.concurrency == 3  # floor(7 / 2)
    one = choose_concurrency(
        "auto", cpu_count=2, free_memory_mb=None, peak_mb_per_task=None, cpu_per_task=3.0
    )
    assert one.concurrency == 1  # at least one


def test_fixed_count_warnings_use_the_cpu_share() -> None:
    fits = choose_concurrency(
        12, cpu_count=2, free_memory_mb=10000, peak_mb_per_task=100, cpu_per_task=0.075
    )
    assert fits.concurrency == 12 and fits.warnings == ()
    over = choose_concurrency(
        20, cpu_count=2, free_memory_mb=1000, peak_mb_per_task=100, cpu_per_task=0.075, widest=50
    )
    assert over.concurrency == 20  # a fixed count is kept
    assert over.warnings == (
        "concurrency 20 exceeds the CPU fit (CPU 2 cores - 1 = 1 spare core / 0.075 core per "
        "task = 13)",
        "concurrency 20 needs 2000 MB of memory but 800 MB fit (memory 1000 MB free x 0.8 / "
        "100 MB per task = 8)",
    )
    assert over.auto == 8  # what auto would give: the advice of the warnings
    busy = choose_concurrency(
        4, cpu_count=2, free_memory_mb=None, peak_mb_per_task=None, cpu_per_task=1.0
    )
    assert len(busy.warnings) == 1 and "1 core per task = 1" in busy.warnings[0]


def test_run_cpu_share_weights_tasks_by_their_predicted_seconds() -> None:
    from planner.planning.concurrency import run_cpu_share

    # eight waiting tasks of 10 min and one computing task of 1 min
    shares = [0.05] * 8 + [1.0]
    seconds = [600.0] * 8 + [60.0]
    assert run_cpu_share(shares, seconds) == pytest.approx((0.05 * 4800 + 60) / 4860)
    # a task of unknown share counts as one core; none known: unknown
    assert run_cpu_share([0.1, None], [10.0, 10.0]) == pytest.approx(0.55)
    assert run_cpu_share([None, None], [10.0, 10.0]) is None
    assert run_cpu_share([], []) is None
    # no predicted seconds at all: the plain mean
    assert run_cpu_share([0.2, 0.4], [0.0, 0.0]) == pytest.approx(0.3)
    # a measured share of 0 stays 0 beside an unknown one
    assert run_cpu_share([0.0, None], [10.0, 30.0]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="2 shares but 1 durations"):
        run_cpu_share([0.1, 0.2], [1.0])


def test_what_if_fits_the_cpu_at_the_tasks_share() -> None:
    rows = what_if(
        {"s": []}, {"s": [1.0] * 20}, [1, 13, 14], peak_mb_per_task=None, cpu_count=2,
        cpu_per_task=0.075,
    )  # fmt: skip
    assert [r.fits_cpu for r in rows] == [True, True, False]


def test_most_at_once_is_the_widest_set_of_independent_steps() -> None:
    from planner.planning.concurrency import most_at_once

    # A (1 task) -> C (8 tasks), beside B (8 tasks): B and C can overlap, 16 at once,
    # though no level of the graph holds more than 9 tasks
    assert most_at_once({"A": [], "B": [], "C": ["A"]}, {"A": 1, "B": 8, "C": 8}) == 16
    chain = {"a": [], "b": ["a"], "c": ["b"]}
    assert most_at_once(chain, {"a": 5, "b": 9, "c": 2}) == 9
    assert most_at_once(chain, {"a": 0, "b": 0, "c": 0}) == 1
    # dependencies through a step with no tasks still order the steps around it
    assert most_at_once(chain, {"a": 4, "b": 0, "c": 4}) == 4
    diamond = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert most_at_once(diamond, {"a": 3, "b": 2, "c": 2, "d": 5}) == 5
    assert most_at_once(diamond, {"a": 3, "b": 4, "c": 2, "d": 5}) == 6


def test_most_at_once_matches_a_search_of_every_set_of_steps() -> None:
    import itertools
    import random

    from planner.graph import ancestors
    from planner.planning.concurrency import most_at_once

    rng = random.Random(7)
    for _ in range(300):
        steps = [str(i) for i in range(rng.randint(1, 7))]
        deps = {s: [d for d in steps[:i] if rng.random() < 0.4] for i, s in enumerate(steps)}
        tasks = {s: rng.choice([0, 1, 2, 3, 8, 500]) for s in steps}
        before = {s: ancestors(deps, [s]) for s in steps}
        best = max(
            sum(tasks[s] for s in group)
            for r in range(len(steps) + 1)
            for group in itertools.combinations(steps, r)
            if all(
                a not in before[b] and b not in before[a]
                for a, b in itertools.combinations(group, 2)
            )
        )
        assert most_at_once(deps, tasks) == max(1, best), (deps, tasks)
