"""Concurrency: auto within CPU and memory, fixed with warnings, what-if."""

from __future__ import annotations

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
