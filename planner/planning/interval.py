"""When the next run starts.

``policy: predicted``: ``max(cadence, run bound x (1 + min_margin))`` after the current
start, capped by ``max_interval``; with a cron line instead of a cadence, the first cron
time at or after that. Tasks that have only the default estimate (no history) never
stretch the interval past the cadence: the bound that counts is the one of the tasks with
history. ``policy: fixed``: the cadence, or the next cron time.
"""

from __future__ import annotations

import math
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
    *,
    known_bound_s: float | None = None,
    misfire_grace_s: float | None = None,
) -> IntervalDecision:
    """The next start after a run that started at ``current_start``, whose bound is given.

    ``known_bound_s``: the run bound counting only the tasks with history, when some have
    only the default estimate (with a cadence, that bound decides how far the interval
    stretches). A next start that has already passed (the current start is old) is moved
    to ``now``; with ``policy: fixed`` and ``misfire_grace_s``, one later than the grace
    is skipped instead, to the next cadence or cron time (as cron would).
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
        unknown = ""
        if cadence is not None and known_bound_s is not None and need > cadence:
            # the stretch past the cadence may rest only on tasks with history
            need = known_bound_s * (1 + schedule.min_margin)
            need_text = (
                f"bound of the tasks with history {format_duration(known_bound_s)} x "
                f"(1 + {schedule.min_margin:g}) = {format_duration(need)}"
            )
            unknown = "; tasks at the default estimate (no history) do not stretch it"
        if cadence is not None:
            interval = max(cadence, need)
            reason = (
                f"cadence {format_duration(cadence)} (longer than the {need_text})"
                if cadence >= need
                else f"{need_text} (longer than the cadence {format_duration(cadence)})"
            ) + unknown
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
        late = (now - next_start).total_seconds()
        if schedule.policy == "fixed" and misfire_grace_s is not None and late > misfire_grace_s:
            skipped = _next_slot(schedule, current_start, now)
            if skipped is not None:
                reason += (
                    f"; the start at {next_start.isoformat()} is {format_duration(late)} late "
                    f"(grace {format_duration(misfire_grace_s)}): skipped to the next"
                )
                next_start = skipped
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


def _next_slot(schedule: Schedule, current_start: datetime, now: datetime) -> datetime | None:
    """The first time of a fixed schedule at or after ``now``."""
    if schedule.cadence is not None:
        periods = math.ceil((now - current_start).total_seconds() / schedule.cadence)
        return current_start + timedelta(seconds=periods * schedule.cadence)
    if schedule.cron:
        return next_cron_time(schedule.cron, now - timedelta(seconds=1), schedule.timezone)
    return None
