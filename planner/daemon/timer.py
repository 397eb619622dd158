"""The daemon's timers on APScheduler 3.x: the scheduler level of the triple guard.

One job per pipeline the daemon leads (``run:<name>``, executor ``runs``), plus the
leadership tick (``control``) and the retraining cron (``train``); an in-memory job store,
``max_instances=1`` (a pipeline's job never runs twice at once), ``coalesce=True`` (starts
missed while the process was asleep run once) and a ``misfire_grace_time``.

A pipeline's next start is decided when its run *ends*, which APScheduler's own triggers
cannot express, and its documented ways around that lose updates:

- ``modify_job(next_run_time=...)`` from an ``EVENT_JOB_EXECUTED`` listener runs in the
  scheduler's thread when the job was fast, inside the loop that then stores the time the
  trigger computed at submission: the new time is overwritten (measured: 20 of 20 lost);
- a ``date`` trigger is removed at submission and cannot reschedule itself.

So each pipeline's job has a :class:`DecidedTrigger` that fires at the time last decided
and otherwise *holds* (a year away), and :meth:`Timer.schedule` sets the decision on the
trigger first and then calls ``modify_job``, never from the scheduler's thread (it
refuses to): from a job's worker thread or the control thread ``modify_job`` waits for the
scheduler's job-store lock, so it always lands after the submission's update; and were it
ever computed again, the trigger gives the same answer. The control tick re-applies each
decision that is not in force (:meth:`Timer.scheduled`), so nothing can stay held.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from planner.clock import ensure_utc

__all__ = ["HOLD", "DecidedTrigger", "Timer"]

#: How far a pipeline's job is put off while its next start is not decided yet.
HOLD = timedelta(days=365)


class DecidedTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at the start the daemon decided last, once; until the next decision, holds."""

    def __init__(self, at: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._at = ensure_utc(at) if at is not None else None

    def decide(self, at: datetime) -> None:
        """The next start, as decided."""
        with self._lock:
            self._at = ensure_utc(at)

    @property
    def decided(self) -> datetime | None:
        """The start decided last (it may have fired already)."""
        with self._lock:
            return self._at

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        with self._lock:
            at = self._at
        if at is not None and (previous_fire_time is None or at > previous_fire_time):
            return at
        return (previous_fire_time or now) + HOLD

    def __str__(self) -> str:
        return f"decided[{self.decided}]"


class Timer:
    """The APScheduler shell: runs ``on_due(name)`` at each pipeline's decided start,
    ``on_tick()`` every ``tick_s`` seconds, ``on_retrain()`` on the ``retrain_cron`` line."""

    def __init__(
        self,
        *,
        pipelines: int,
        on_due: Callable[[str], None],
        on_tick: Callable[[], None],
        tick_s: float,
        on_retrain: Callable[[], None] | None = None,
        retrain_cron: str | None = None,
        timezone: str = "UTC",
        misfire_grace_s: float = 300.0,
        on_error: Callable[[str, BaseException | None], None] | None = None,
    ) -> None:
        self._on_due = on_due
        self._on_tick = on_tick
        self._tick_s = tick_s
        self._on_retrain = on_retrain
        self._retrain_cron = retrain_cron
        self._timezone = timezone
        self._on_error = on_error
        self._triggers: dict[str, DecidedTrigger] = {}
        self._lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={
                "runs": ThreadPoolExecutor(max(1, pipelines)),
                "control": ThreadPoolExecutor(1),
                "train": ThreadPoolExecutor(1),
            },
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(max(1, misfire_grace_s)),
            },
            timezone=UTC,
        )
        self.scheduler.add_listener(self._event, EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
        # APScheduler's own log says the same as the listener, in another form: one voice
        logging.getLogger("apscheduler").setLevel(logging.CRITICAL)

    def start(self) -> None:
        """Start the scheduler's thread; the first tick runs at once."""
        self.scheduler.add_job(
            self._on_tick,
            IntervalTrigger(seconds=self._tick_s, timezone=UTC),
            id="control:tick",
            executor="control",
            next_run_time=datetime.now(UTC),
        )
        if self._on_retrain is not None and self._retrain_cron:
            self.scheduler.add_job(
                self._on_retrain,
                CronTrigger.from_crontab(self._retrain_cron, timezone=self._timezone),
                id="train:nightly",
                executor="train",
                misfire_grace_time=3600,
            )
        self.scheduler.start()

    def schedule(self, name: str, at: datetime) -> None:
        """Run ``on_due(name)`` at ``at`` (replacing the start decided before)."""
        if threading.current_thread() is getattr(self.scheduler, "_thread", None):
            raise RuntimeError("a start is never rescheduled from the scheduler's thread")
        at = ensure_utc(at)
        with self._lock:
            trigger = self._triggers.get(name)
            if trigger is None:
                trigger = self._triggers[name] = DecidedTrigger(at)
                self.scheduler.add_job(
                    self._on_due,
                    trigger,
                    args=[name],
                    id=_job_id(name),
                    executor="runs",
                    next_run_time=at,
                    replace_existing=True,
                )
                return
            trigger.decide(at)
            self.scheduler.modify_job(_job_id(name), next_run_time=at)

    def unschedule(self, name: str) -> None:
        """Stop starting ``name`` (a run in progress goes on)."""
        with self._lock:
            if self._triggers.pop(name, None) is not None:
                with contextlib.suppress(LookupError):  # JobLookupError: already gone
                    self.scheduler.remove_job(_job_id(name))

    def scheduled(self, name: str) -> datetime | None:
        """When ``on_due(name)`` runs next (``None``: not scheduled)."""
        job = self.scheduler.get_job(_job_id(name))
        return ensure_utc(job.next_run_time) if job and job.next_run_time else None

    def pause(self) -> None:
        """Start nothing more (jobs already running go on)."""
        if self.scheduler.running:
            self.scheduler.pause()

    def shutdown(self) -> None:
        """Stop the scheduler's thread without waiting for running jobs."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _event(self, event: JobEvent) -> None:
        # Runs in whichever thread APScheduler dispatches from: it only reports.
        if event.job_id == "control:tick" and event.code == EVENT_JOB_MAX_INSTANCES:
            return  # a slow tick: the next one comes anyway
        if self._on_error is not None:
            what = (
                "skipped: the previous one is still running"
                if event.code == EVENT_JOB_MAX_INSTANCES
                else "failed"
            )
            self._on_error(f"job {event.job_id} {what}", getattr(event, "exception", None))


def _job_id(name: str) -> str:
    return f"run:{name}"
