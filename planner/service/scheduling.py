"""When a pipeline runs next: the decisions behind ``planner daemon``.

The daemon is a thin shell (timers, child processes, signals); what it decides comes from
here, and the arithmetic from pure planning code
(:func:`~planner.planning.interval.decide_interval`):

- :func:`decide_after` makes a plan *now* for the run that just ended (or the newest in
  the history) and takes its interval: ``policy: predicted`` stretches past the cadence
  when the calibrated run bound needs it and comes back when runs get faster;
- :func:`resume` derives the next start from the history when a daemon starts or takes a
  pipeline over: the decision stored after the newest run, else a new one from that run;
- :func:`active_run` tells whether a run of the pipeline holds its lease (started by hand,
  by another host, or left running by a daemon that died): a start that comes due then
  is deferred, never run twice.

Every decision is a :class:`NextStart`; :func:`record` stores it (table ``decisions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from planner import defaults
from planner.hosts import host_id
from planner.status import DecisionKind
from planner.units import format_duration

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.history import LeaseHolder, RunRecord
    from planner.service.instance import Instance

__all__ = [
    "RESUMED",
    "NextStart",
    "active_run",
    "decide_after",
    "deferred",
    "record",
    "refused",
    "resume",
]


#: The kind of a :class:`NextStart` taken from a stored decision (stored again as
#: ``scheduled``).
RESUMED = "resumed"


@dataclass(frozen=True)
class NextStart:
    """A decision about a pipeline's next start.

    ``at``: when (``None``: runs start only when asked); ``kind``: ``scheduled`` (after a
    run, or the first), ``resumed`` (taken from a stored decision), ``deferred`` (a run is
    active), ``refused`` (the last start did not run); ``detail``: the figures it rests on
    (the plan's predicted and bound seconds, its concurrency, the run it follows)."""

    at: datetime | None
    reason: str
    kind: str = DecisionKind.SCHEDULED
    interval_s: float | None = None
    run_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The decision as JSON-ready data (times as ISO 8601 text)."""
        return {
            "kind": self.kind,
            "at": self.at.isoformat() if self.at else None,
            "interval_s": self.interval_s,
            "run_id": self.run_id,
            "reason": self.reason,
            **self.detail,
        }


def decide_after(
    instance: Instance,
    pipeline: Pipeline,
    run: RunRecord | None,
    *,
    now: datetime,
    misfire_grace_s: float = defaults.MISFIRE_GRACE_S,
) -> NextStart:
    """The next start after ``run`` (``None``: the pipeline has never run), from a plan
    made at ``now`` for a run starting when ``run`` started."""
    schedule = pipeline.schedule
    if run is None:
        if schedule.policy == "fixed" and schedule.cron and schedule.cadence is None:
            from planner.planning.interval import next_cron_time

            at = next_cron_time(schedule.cron, now - timedelta(seconds=1), schedule.timezone)
            return NextStart(at, f"first run: the next time of cron {schedule.cron!r}")
        return NextStart(now, "first run: no run of this pipeline in the history")
    from planner.service.planning import PlanRequest, make_plan

    plan = make_plan(
        instance,
        pipeline,
        PlanRequest(current_start=run.started_at, misfire_grace_s=misfire_grace_s),
        now=now,
    )
    interval = plan.interval
    detail = {
        "predicted_s": round(plan.run.predicted_s, 3),
        "bound_s": round(plan.run.bound_s, 3),
        "concurrency": plan.concurrency,
        "after_run": run.run_id,
        "after_run_started_at": run.started_at.isoformat(),
    }
    return NextStart(
        interval.next_start,
        interval.reason,
        interval_s=interval.interval_s,
        detail=detail,
    )


def resume(
    instance: Instance,
    pipeline: Pipeline,
    *,
    now: datetime,
    misfire_grace_s: float = defaults.MISFIRE_GRACE_S,
) -> NextStart:
    """The next start of ``pipeline`` from its history: the decision stored after its
    newest run when there is one (a daemon that restarts or takes over goes on where the
    last left off), else decided anew from that run."""
    store = instance.store
    runs = store.list_runs(pipeline.name, limit=1)
    last = runs[0] if runs else None
    stored = store.last_decisions([pipeline.name], DecisionKind.SCHEDULED).get(pipeline.name)
    if stored is not None and stored.next_start is not None and last is not None:
        ended = last.finished_at or last.started_at
        missed = (now - stored.next_start).total_seconds() > misfire_grace_s
        fixed_missed = pipeline.schedule.policy == "fixed" and missed  # cron skips those
        if (
            stored.at >= ended
            and stored.detail.get("after_run") == last.run_id
            and not fixed_missed
        ):
            # the same decision goes on: its reason unchanged, when it was first made kept
            return NextStart(
                max(stored.next_start, now),
                stored.reason,
                kind=RESUMED,
                interval_s=stored.interval_s,
                detail={"decided_at": stored.at.isoformat(), **stored.detail},
            )
    return decide_after(instance, pipeline, last, now=now, misfire_grace_s=misfire_grace_s)


def active_run(instance: Instance, pipeline: str) -> LeaseHolder | None:
    """The lease of a run of ``pipeline`` that still holds it, if any: unexpired on the
    lease clock (the database server's on PostgreSQL), and, when it names this host
    (:func:`~planner.hosts.host_id`), its process alive. An expired lease or a dead
    holder's is free: the next run takes it over and marks that run ``abandoned``. A
    holder on another host is judged by its expiry alone: its processes cannot be seen
    from here."""
    from planner.history.leases import holder_process_alive

    store = instance.store
    holder = store.get_lease(pipeline)
    if holder is None or holder.expires_at <= store.lease_time(instance.clock.now()):
        return None
    if holder.host == host_id() and not holder_process_alive(holder):
        return None
    return holder


def deferred(pipeline: Pipeline, holder: LeaseHolder, *, now: datetime) -> NextStart:
    """A start that came due while run ``holder.run_id`` holds the pipeline's lease: look
    again after a poll (the cadence, at most :data:`~planner.defaults.DEFER_POLL_S`)."""
    cadence = pipeline.schedule.cadence
    poll = min(cadence, defaults.DEFER_POLL_S) if cadence else defaults.DEFER_POLL_S
    who = f"{holder.host} pid {holder.pid}"
    return NextStart(
        now + timedelta(seconds=poll),
        f"run {holder.run_id} is active ({who}, lease until "
        f"{holder.expires_at:%H:%M:%S}Z): start deferred, looking again in "
        f"{format_duration(poll)}",
        kind=DecisionKind.DEFERRED,
        interval_s=poll,
        run_id=holder.run_id,
        detail={"holder_host": holder.host, "holder_pid": holder.pid},
    )


def refused(pipeline: Pipeline, why: str, *, now: datetime) -> NextStart:
    """A start that did not run (``why``): try again after the cadence, or
    :data:`~planner.defaults.REFUSED_RETRY_S` without one."""
    retry = pipeline.schedule.cadence or defaults.REFUSED_RETRY_S
    return NextStart(
        now + timedelta(seconds=retry),
        f"{why}; trying again in {format_duration(retry)}",
        kind=DecisionKind.REFUSED,
        interval_s=retry,
    )


def record(
    instance: Instance,
    pipeline: str,
    kind: str,
    reason: str,
    *,
    run_id: str | None = None,
    next_start: datetime | None = None,
    interval_s: float | None = None,
    detail: dict[str, Any] | None = None,
    owner_id: str | None = None,
) -> int:
    """Store one decision of the daemon (a start, an end, a next start, a deferral, a
    retraining, a change of leader) in the history; returns its id."""
    return instance.store.record_decision(
        pipeline,
        kind,
        instance.clock.now(),
        reason,
        run_id=run_id,
        next_start=next_start,
        interval_s=interval_s,
        detail=detail,
        owner_id=owner_id,
        host=host_id(),
    )
