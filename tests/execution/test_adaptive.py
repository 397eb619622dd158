"""The adaptive limit's controller on simulated machines (pure: a fake time line).

Each simulation runs ``tasks`` tasks of ``work`` predicted seconds under the controller;
a running task advances at ``1 / stretch(n)`` predicted seconds per second with ``n``
tasks running (a remote service that serves ``k`` at once: ``max(1, n / k)``; two
cores: ``max(1, n / 2)``), the loop's wake-ups every 0.2 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from planner.execution.adaptive import AdaptiveBounds, AdaptiveLimit, LimitChange, LoadReading

STEP = 0.05


@dataclass
class _Task:
    started: float
    mark: float
    left: float


@dataclass
class Simulation:
    limits: list[tuple[float, int]] = field(default_factory=list)
    changes: list[LimitChange] = field(default_factory=list)
    wall_s: float = 0.0


def simulate(
    controller: AdaptiveLimit,
    *,
    tasks: int,
    work: float,
    stretch: Callable[[int], float],
    load: Callable[[int], LoadReading] = lambda n: LoadReading(),
    peak_mb: float | None = None,
    cpu_bound: bool = False,
) -> Simulation:
    out = Simulation()
    now, area, waiting, running = 0.0, 0.0, tasks, []
    next_tick = 0.0
    while waiting or running:
        while waiting and len(running) < controller.limit:
            waiting -= 1
            running.append(_Task(now, area, work))
        if now >= next_tick:
            next_tick = now + 0.2
            change = controller.update(
                now, running=len(running), waiting=waiting, load=load(len(running))
            )
            if change is not None:
                out.changes.append(change)
            out.limits.append((now, controller.limit))
        rate = 1 / stretch(len(running))
        area += len(running) * STEP
        now += STEP
        for task in list(running):
            task.left -= rate * STEP
            if task.left <= 0:
                running.remove(task)
                duration = now - task.started
                controller.task_finished(
                    started=task.started,
                    duration_s=duration,
                    predicted_s=work,
                    mean_running=(area - task.mark) / duration,
                    peak_rss_mb=peak_mb,
                    cpu_s=work if cpu_bound else 0.01 * duration,
                )
    out.wall_s = now
    return out


def _fixed(n: int, *, tasks: int, work: float, stretch: Callable[[int], float]) -> float:
    controller = AdaptiveLimit(AdaptiveBounds(n, n, n), memory_threshold=0.9, now=0.0)
    return simulate(controller, tasks=tasks, work=work, stretch=stretch).wall_s


def test_waiting_bound_tasks_grow_to_the_services_capacity_and_settle_there() -> None:
    def service(n: int) -> float:
        return max(1.0, n / 8)  # serves 8 at once

    controller = AdaptiveLimit(AdaptiveBounds(1, 1, 64), memory_threshold=0.9, now=0.0)
    sim = simulate(controller, tasks=72, work=2.0, stretch=service)
    steps = [(c.old, c.new) for c in sim.changes]
    assert steps[:2] == [(1, 4), (4, 16)]  # x4 while it pays and the CPU is idle
    assert steps[2] == (16, 8)  # 16 only stretched the tasks 2x: about 8 were served
    assert "did not pay" in sim.changes[2].reason and "back to 8" in sim.changes[2].reason
    assert "2.0" in sim.changes[2].reason  # the stretch that gave it away
    assert all(n == 8 for at, n in sim.limits if sim.changes[2].at_mono <= at < 15)
    best = min(_fixed(n, tasks=72, work=2.0, stretch=service) for n in (1, 8, 16))
    assert sim.wall_s <= 1.3 * best
    assert sim.wall_s * 2 <= _fixed(1, tasks=72, work=2.0, stretch=service)


def test_cpu_bound_tasks_stop_near_the_cores() -> None:
    def cores(n: int) -> float:
        return max(1.0, n / 2)

    def busy(n: int) -> LoadReading:
        return LoadReading(cpu_busy=min(1.0, n / 2), cores=2)

    controller = AdaptiveLimit(AdaptiveBounds(1, 1, 16), memory_threshold=0.9, now=0.0)
    sim = simulate(controller, tasks=40, work=1.0, stretch=cores, load=busy, cpu_bound=True)
    assert max(n for _, n in sim.limits) <= 3  # CPU saturated: one more, never doubling
    assert controller.limit == 2
    best = min(_fixed(n, tasks=40, work=1.0, stretch=cores) for n in (1, 2, 4))
    assert sim.wall_s <= 1.25 * best


def test_memory_stops_the_growth_before_the_threshold() -> None:
    def memory(n: int) -> LoadReading:  # 40 % in use, 500 MB a task, 10 GB in all
        return LoadReading(memory_used=0.4 + n * 0.05, memory_total_mb=10_000)

    controller = AdaptiveLimit(AdaptiveBounds(1, 1, 64), memory_threshold=0.7, now=0.0)
    sim = simulate(controller, tasks=60, work=1.0, stretch=lambda n: 1.0, load=memory, peak_mb=500)
    top = max(n for _, n in sim.limits)
    assert 0.4 + top * 0.05 < 0.7  # never at the threshold
    assert top >= 4


def test_memory_at_the_threshold_halves_the_limit() -> None:
    controller = AdaptiveLimit(AdaptiveBounds(8, 2, 16), memory_threshold=0.8, now=0.0)
    change = controller.update(1.0, running=8, waiting=10, load=LoadReading(memory_used=0.85))
    assert change is not None and (change.old, change.new) == (8, 4)
    assert "memory 85% in use" in change.reason and "80%" in change.reason
    change = controller.update(2.0, running=4, waiting=10, load=LoadReading(memory_used=0.9))
    assert change is not None and change.new == 2
    assert controller.update(3.0, running=2, waiting=10, load=LoadReading(memory_used=0.9)) is None


def test_never_above_the_ceiling_nor_below_min() -> None:
    controller = AdaptiveLimit(AdaptiveBounds(2, 2, 5), memory_threshold=0.9, now=0.0)
    sim = simulate(controller, tasks=60, work=1.0, stretch=lambda n: 1.0)
    assert all(2 <= n <= 5 for _, n in sim.limits)
    assert max(n for _, n in sim.limits) == 5
    assert AdaptiveBounds(40, 1, 16).start == 16  # a start beyond the ceiling is clamped


def test_a_service_that_slows_down_cuts_the_limit() -> None:
    def service(n: int) -> float:
        return max(1.0, n / 8)

    controller = AdaptiveLimit(AdaptiveBounds(8, 1, 64), memory_threshold=0.9, now=0.0)
    # reach steady at 8 first (32 stretched the tasks 4x)
    sim = simulate(controller, tasks=80, work=1.0, stretch=service)
    assert [(c.old, c.new) for c in sim.changes][:2] == [(8, 32), (32, 8)]
    # then every task takes three times as long at the same limit
    controller._probe_wait = 100  # no probe in this part
    assert controller.limit == 8
    for i in range(8):
        controller.task_finished(started=100.0 + i, duration_s=3.0, predicted_s=1.0, mean_running=8)
    change = controller.update(110.0, running=8, waiting=20, load=LoadReading())
    assert change is not None and change.new == 6 and "tasks slowed" in change.reason


@pytest.mark.parametrize("start", [1, 3])
def test_a_run_without_enough_tasks_never_grows(start: int) -> None:
    controller = AdaptiveLimit(AdaptiveBounds(start, 1, 32), memory_threshold=0.9, now=0.0)
    sim = simulate(controller, tasks=start, work=1.0, stretch=lambda n: 1.0)
    assert sim.changes == []


def test_waiting_tasks_grow_fast_even_when_others_keep_the_cpu_busy() -> None:
    def service(n: int) -> float:
        return max(1.0, n / 8)

    def busy(n: int) -> LoadReading:  # another program saturates the machine
        return LoadReading(cpu_busy=1.0, load_per_core=3.0, cores=2)

    controller = AdaptiveLimit(AdaptiveBounds(1, 1, 64), memory_threshold=0.9, now=0.0)
    sim = simulate(controller, tasks=72, work=2.0, stretch=service, load=busy)
    assert [(c.old, c.new) for c in sim.changes][:3] == [(1, 4), (4, 16), (16, 8)]
