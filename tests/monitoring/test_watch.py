"""The watcher's ETA and levels on a fake timeline (pure: no clock, no sinks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from planner.monitoring.watch import Thresholds, Watcher, eta_seconds

T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def watcher(**extra: object) -> Watcher:
    """Step 1 for accounts a..f (predicted 100 s, bound 130 s), then step 2 (50 s / 65 s)."""
    tasks = {("1", a): (100.0, 130.0, True) for a in "abcdef"}
    tasks[("2", None)] = (50.0, 65.0, True)
    return Watcher(
        tasks=tasks,  # type: ignore[arg-type]
        deps={"1": [], "2": ["1"]},
        slots=6,
        run_predicted_s=150.0,
        run_bound_s=200.0,
        started_at=T0,
        **extra,  # type: ignore[arg-type]
    )


def test_eta_schedules_the_remaining_work_on_the_slots() -> None:
    assert eta_seconds({"1": [], "2": ["1"]}, {"1": [10.0, 10.0, 30.0], "2": [5.0]}, 2) == 35.0
    assert eta_seconds({"2": ["1"]}, {"2": [5.0]}, 2) == 5.0  # step 1 is done
    w = watcher()
    for a in "abcdef":
        w.task_started(("1", a), at(0))
    w.evaluate(at(40))
    assert w.eta == at(150)  # 60 s left of step 1, then 50 s of step 2


def test_tasks_that_behave_as_predicted_raise_nothing() -> None:
    w = watcher()
    for a in "abcdef":
        w.task_started(("1", a), at(0))
    signals = []
    for t in range(0, 100, 5):
        signals += w.evaluate(at(t))
    for a in "abcdef":
        w.task_finished(("1", a), at(100 + "abcdef".index(a)))
    w.task_started(("2", None), at(106))
    for t in range(106, 160, 5):
        signals += w.evaluate(at(t))
    assert signals == []


def test_one_account_12x_longer_warns_then_goes_critical_naming_it() -> None:
    w = watcher()
    for a in "abcdef":
        w.task_started(("1", a), at(0))
    fired = []
    for t in range(0, 400, 5):
        if t == 100:
            for a in "abcde":  # the others finish on time
                w.task_finished(("1", a), at(100))
        fired += [(t, s.level, s.kind, s.account) for s in w.evaluate(at(t))]
    levels = [(lv, kind, acct) for _, lv, kind, acct in fired]
    assert ("warning", "task_late", "f") in levels and ("critical", "task_late", "f") in levels
    assert ("critical", "task_stuck", "f") in levels  # 2x its bound: 260 s
    assert all(acct in (None, "f") for _, _, acct in levels)  # nobody else
    first = {(lv, kind, acct): t for t, lv, kind, acct in fired}
    assert first[("warning", "task_late", "f")] == 105  # past max(104, 100) + 1 s
    assert first[("critical", "task_late", "f")] == 135  # past 130 + 1 s
    # the run: warned when its ETA passed 0.8 x 200 s, critical past 200 s, naming f
    assert ("warning", "run_late", None) in levels
    critical = [s for s in fired if s[1:3] == ("critical", "run_late")]
    assert len(critical) == 1 and critical[0][0] == 205


def test_levels_passed_at_once_fire_in_order_and_once() -> None:
    w = watcher()
    w.task_started(("1", "a"), at(0))
    signals = w.evaluate(at(300))  # past warning, critical and stuck in one step
    task = [(s.level, s.kind) for s in signals if s.account == "a"]
    assert task == [("warning", "task_late"), ("critical", "task_late"), ("critical", "task_stuck")]
    assert [s for s in w.evaluate(at(305)) if s.account == "a"] == []


def test_min_excess_keeps_sub_second_tasks_quiet() -> None:
    w = Watcher(
        tasks={("fast", None): (0.2, 0.3, True)},
        deps={"fast": []},
        slots=1,
        run_predicted_s=None,
        run_bound_s=None,
        started_at=T0,
        thresholds=Thresholds(min_excess_s=1.0),
    )
    w.task_started(("fast", None), at(0))
    assert w.evaluate(at(1.0)) == []  # 3x its bound, but 0.7 s over: jitter
    assert [s.level for s in w.evaluate(at(1.4))] == ["warning", "critical"]  # 1.24, 1.3 s
    assert [s.kind for s in w.evaluate(at(1.7))] == ["task_stuck"]  # 2 x 0.3 + 1 s


def test_no_prediction_no_threshold_alerts_said_once() -> None:
    w = Watcher(
        tasks={("new", "a"): (60.0, 60.0, False), ("new", "b"): (60.0, 60.0, False)},
        deps={"new": []},
        slots=2,
        run_predicted_s=None,
        run_bound_s=None,
        started_at=T0,
    )
    (said,) = w.start()
    assert said.kind == "no_prediction" and said.text.startswith("2 task(s) have no prediction")
    w.task_started(("new", "a"), at(0))
    assert w.evaluate(at(1000)) == []


def test_a_collision_with_the_next_start_warns_once() -> None:
    w = watcher(next_start=at(120))
    for a in "abcdef":
        w.task_started(("1", a), at(0))
    signals = w.evaluate(at(10))  # ETA 150 s > the next start at 120 s
    assert [(s.level, s.kind) for s in signals] == [("warning", "run_collision")]
    assert w.evaluate(at(20)) == []
