"""The next start: predicted policy, fixed cadence, cron, cap, min_margin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from planner.config.models import Schedule
from planner.planning.interval import decide_interval

START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
H = 3600.0


def test_predicted_keeps_the_cadence_when_the_bound_fits() -> None:
    d = decide_interval(Schedule(cadence=24 * H, min_margin=0.1), 10 * H, START, START)
    assert d.interval_s == 24 * H
    assert d.next_start == START + timedelta(hours=24)
    assert d.fits_cadence


def test_predicted_stretches_to_bound_plus_margin() -> None:
    d = decide_interval(Schedule(cadence=24 * H, min_margin=0.1), 29.1 * H, START, START)
    assert d.interval_s == pytest.approx(29.1 * H * 1.1)
    assert d.next_start == START + timedelta(seconds=29.1 * H * 1.1)
    assert not d.fits_cadence


@pytest.mark.parametrize("margin", [0.0, 0.25, 1.0])
def test_min_margin_is_applied(margin: float) -> None:
    d = decide_interval(Schedule(cadence=H, min_margin=margin), 2 * H, START, START)
    assert d.interval_s == pytest.approx(2 * H * (1 + margin))


def test_max_interval_caps_the_predicted_interval() -> None:
    schedule = Schedule(cadence=24 * H, min_margin=0.1, max_interval=48 * H)
    d = decide_interval(schedule, 60 * H, START, START)
    assert d.interval_s == 48 * H
    assert "max_interval" in d.reason


def test_fixed_cadence_ignores_the_bound_but_says_it_overruns() -> None:
    d = decide_interval(Schedule(cadence=24 * H, policy="fixed"), 30 * H, START, START)
    assert d.interval_s == 24 * H
    assert not d.fits_cadence
    assert "deferred" in d.reason


def test_fixed_cron_uses_the_next_cron_time() -> None:
    schedule = Schedule(cron="0 2 * * *", policy="fixed")
    d = decide_interval(schedule, 1 * H, START, START)  # START is 02:00: next is tomorrow
    assert d.next_start == START + timedelta(days=1)
    assert d.interval_s == 24 * H


def test_fixed_cron_that_never_fires_gives_no_next_start() -> None:
    # Validation refuses such a line (tests/config); planning still copes with a schedule
    # built without validation.
    with pytest.raises(ValueError, match="never fires"):
        Schedule(cron="0 0 30 2 *", policy="fixed")
    schedule = Schedule.model_construct(cron="0 0 30 2 *", policy="fixed")  # February 30th
    d = decide_interval(schedule, 1 * H, START, START)  # raised AssertionError before
    assert (d.interval_s, d.next_start) == (None, None)
    assert "never fires" in d.reason


def test_predicted_cron_takes_the_first_cron_time_after_the_bound() -> None:
    schedule = Schedule(cron="0 */6 * * *", policy="predicted", min_margin=0.0)
    d = decide_interval(schedule, 7 * H, START, START)  # 02:00 + 7 h = 09:00 -> 12:00
    assert d.next_start == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_predicted_without_cadence_uses_the_bound() -> None:
    d = decide_interval(Schedule(min_margin=0.5), 2 * H, START, START)
    assert d.interval_s == 3 * H


def test_overdue_next_start_is_now() -> None:
    now = START + timedelta(days=3)
    d = decide_interval(Schedule(cadence=24 * H), H, START, now)
    assert d.next_start == now
    assert "overdue" in d.reason


def test_fixed_without_schedule_has_no_next_start() -> None:
    d = decide_interval(Schedule(policy="fixed"), H, START, START)
    assert d.next_start is None
    assert d.interval_s is None
