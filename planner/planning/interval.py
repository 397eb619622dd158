"""When the next run starts.

``policy: predicted``: ``max(cadence, run bound x (1 + min_margin))`` after the current
start, capped by ``max_interval``; with a cron line instead of a cadence, the first cron
time at or after that. ``policy: fixed``: the cadence, or the next cron time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from planner.config.models import Schedule
from planner.planning.model import IntervalDecision
from planner.units import format_duration

__all__ = ["decide_interval", "next_cron_time"]


def next_cron_time(cron: str, after: datetime, timezone: str = "UTC") -> datetime | None:
    """The first time the crontab line ``cron`` fires strictly after ``after`` (UTC)."""
    from datetime import UTC

    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(cron, timezone=timezone)
    fire = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
    return fire.astimezone(UTC) if fire is not None else None


def decide_interval(
    schedule: Schedule,
    run_bound_s: float,
    current_start: datetime,
    now: datetime,
) -> IntervalDecision:
    """The next start after a run that started at ``current_start``, whose bound is given.

    A next start that has already passed (the current start is old) is moved to ``now``.
    """
    cadence = schedule.cadence
    bound_text = format_duration(run_bound_s)
    overrun = cadence is not None and run_bound_s > cadence
    if schedule.policy == "fixed":
        if cadence is not None:
            interval: float | None = cadence
            reason = f"fixed cadence {format_duration(cadence)}"
        elif schedule.cron:
            fire = next_cron_time(schedule.cron, current_start, schedule.timezone)
            if fire is None:  # e.g. "0 0 30 2 *": parses, but no date matches
                reason = f"fixed cron {schedule.cron!r} never fires: runs start only when asked"
                return IntervalDecision("fixed", None, None, reason, True)
            interval = (fire - current_start).total_seconds()
            reason = f"fixed cron {schedule.cron!r}"
        else:
            return IntervalDecision(
                "fixed", None, None, "no cadence or cron: runs start only when asked", True
            )
        if interval is not None and run_bound_s > interval:
            overrun = True
            reason += (
                f"; the run bound {bound_text} is longer: the next start will be deferred "
                "by the lock"
            )
    else:
        need = run_bound_s * (1 + schedule.min_margin)
        need_text = f"bound {bound_text} x (1 + {schedule.min_margin:g}) = {format_duration(need)}"
        if cadence is not None:
            interval = max(cadence, need)
            reason = (
                f"cadence {format_duration(cadence)} (longer than the {need_text})"
                if cadence >= need
                else f"{need_text} (longer than the cadence {format_duration(cadence)})"
            )
        elif schedule.cron:
            fire = next_cron_time(
                schedule.cron,
                current_start + timedelta(seconds=need) - timedelta(seconds=1),
                schedule.timezone,
            )
            interval = (fire - current_start).total_seconds() if fire else need
            reason = f"first time of cron {schedule.cron!r} after the {need_text}"
        else:
            interval = need
            reason = need_text
        if schedule.max_interval is not None and interval > schedule.max_interval:
            interval = schedule.max_interval
            reason += f", capped by max_interval {format_duration(schedule.max_interval)}"
            if need > interval:
                reason += ": the run may still be running then, and the lock will defer it"
    assert interval is not None
    next_start = current_start + timedelta(seconds=interval)
    if next_start < now:
        reason += f"; overdue since {next_start.isoformat()}, so due now"
        next_start = now
    return IntervalDecision(
        policy=schedule.policy,
        interval_s=interval,
        next_start=next_start,
        reason=reason,
        fits_cadence=not overrun,
        cadence_s=cadence,
    )
