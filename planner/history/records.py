"""What goes into the history and what comes out of it: statuses and plain records.

These are frozen dataclasses with no database behaviour; the store turns them into rows.
Every datetime is timezone-aware UTC (a naive value handed in is taken to be UTC).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from planner.hosts import host_id
from planner.status import AttemptStatus, RunStatus  # re-exported: the history's vocabulary

__all__ = [
    "STDERR_TAIL_BYTES",
    "AlertRecord",
    "AttemptOutcome",
    "AttemptRecord",
    "AttemptStart",
    "AttemptStatus",
    "DecisionRecord",
    "DeliveryRecord",
    "DeliveryStatus",
    "ImportResult",
    "LeaseHolder",
    "LeaseOwner",
    "LeaseResult",
    "PlanRecord",
    "RunRecord",
    "RunStatus",
    "TakeoverReason",
    "task_counts",
]

#: The stderr tail kept per attempt, in bytes of UTF-8 (the end is kept).
STDERR_TAIL_BYTES = 4096

ParamValue = str | int | float | bool | None


class TakeoverReason(StrEnum):
    """Why a lease held by someone else was taken."""

    EXPIRED = "expired"
    OWNER_DEAD = "owner_dead"


@dataclass(frozen=True)
class AttemptStart:
    """An attempt as written when its process starts (status ``running``).

    ``pid`` and ``pgid`` are recorded so that a later run can stop what a dead run left.
    ``params`` holds scalars only; environment values are never stored.
    """

    run_id: str
    pipeline: str
    step: str
    account: str | None
    attempt: int
    quantity: float | None
    params: Mapping[str, ParamValue]
    n_accounts: int | None
    concurrency: int | None
    host: str
    started_at: datetime
    pid: int | None = None
    pgid: int | None = None
    load_avg: float | None = None
    free_mem_mb: float | None = None
    cpu_count: int | None = None


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended. ``stderr_tail`` is cut to its last :data:`STDERR_TAIL_BYTES`."""

    status: AttemptStatus | str
    finished_at: datetime
    duration_s: float | None
    exit_code: int | None = None
    error_class: str | None = None
    stderr_tail: str | None = None
    peak_rss_mb: float | None = None
    cpu_s: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """One stored attempt row."""

    attempt_id: int
    run_id: str
    pipeline: str
    step: str
    account: str | None
    attempt: int
    quantity: float | None
    params: dict[str, Any]
    n_accounts: int | None
    concurrency: int | None
    host: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    status: str
    exit_code: int | None
    error_class: str | None
    stderr_tail: str | None
    peak_rss_mb: float | None
    cpu_s: float | None
    load_avg: float | None
    free_mem_mb: float | None
    cpu_count: int | None
    pid: int | None
    pgid: int | None
    reason: str | None
    source: str
    source_key: str | None


@dataclass(frozen=True)
class RunRecord:
    """One stored run."""

    run_id: str
    pipeline: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    host: str | None
    pid: int | None
    owner_id: str | None
    concurrency: int | None
    n_accounts: int | None
    selection: dict[str, Any]
    resumed_from: str | None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish; ``None`` while running."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class LeaseOwner:
    """Who asks for a lease: a unique token plus where it runs."""

    owner_id: str
    host: str
    pid: int
    run_id: str | None = None

    @classmethod
    def here(cls, run_id: str | None = None) -> LeaseOwner:
        """An owner for this process: a fresh token, this host's id
        (:func:`planner.hosts.host_id`: ``$PLANNER_HOST_ID`` or the host name) and pid."""
        return cls(uuid.uuid4().hex, host_id(), os.getpid(), run_id)


@dataclass(frozen=True)
class LeaseHolder:
    """A lease row as stored."""

    pipeline: str
    owner_id: str
    host: str
    pid: int
    run_id: str | None
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class LeaseResult:
    """The answer to ``acquire_lease``.

    ``acquired`` False: ``holder`` is who holds it. ``acquired`` True: ``holder`` is our
    own row, and ``previous`` is the holder we took it from (expired, or its process gone
    on this host), whose run the caller should mark abandoned.
    """

    acquired: bool
    holder: LeaseHolder
    previous: LeaseHolder | None = None
    reason: TakeoverReason | None = None

    @property
    def previous_run_id(self) -> str | None:
        """The run of the holder we took over from, if any."""
        return self.previous.run_id if self.previous is not None else None


@dataclass(frozen=True)
class PlanRecord:
    """A stored plan: its predicted run time, upper bound, and the whole plan document."""

    plan_id: int
    pipeline: str
    run_id: str | None
    created_at: datetime
    predicted_s: float
    bound_s: float
    document: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionRecord:
    """One stored scheduler decision: ``kind`` (``scheduled``, ``deferred``, ...) taken
    ``at`` about ``pipeline``, why (``reason``), the next start and interval it chose, the
    run it concerns, the rest (``detail``), and the daemon that took it."""

    id: int
    pipeline: str
    at: datetime
    kind: str
    run_id: str | None
    next_start: datetime | None
    interval_s: float | None
    reason: str
    detail: dict[str, Any]
    owner_id: str | None
    host: str | None


@dataclass(frozen=True)
class ImportResult:
    """What ``import_attempts`` did."""

    source: str
    inserted: int
    duplicates: int

    @property
    def total(self) -> int:
        return self.inserted + self.duplicates


def task_counts(attempts: Iterable[Any]) -> dict[str, int]:
    """Final status -> number of tasks, each task (step, account) counted by its last
    attempt: the highest attempt number, then the latest start, then the latest id.

    ``attempts`` are :class:`AttemptRecord` objects or rows with the same attributes.
    """
    last: dict[tuple[str, str | None], str] = {}
    for a in sorted(attempts, key=lambda a: (a.attempt, a.started_at, a.attempt_id)):
        last[(a.step, a.account)] = a.status
    counts: dict[str, int] = {}
    for status in last.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


class DeliveryStatus(StrEnum):
    """Where one alert's delivery to one sink stands."""

    PENDING = "pending"  # not tried yet (queued, or the process ended first)
    SENT = "sent"
    FAILED = "failed"  # the last try failed; retried while the process lives, then later


@dataclass(frozen=True)
class DeliveryRecord:
    """One stored delivery: an alert to one sink (named by its label, never a secret)."""

    delivery_id: int
    alert_id: int
    sink: str
    status: str
    attempts: int
    last_error: str | None
    updated_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class AlertRecord:
    """One stored alert and its deliveries (oldest sink row first)."""

    alert_id: int
    pipeline: str
    run_id: str | None
    step: str | None
    account: str | None
    level: str
    kind: str
    at: datetime
    elapsed_s: float | None
    predicted_s: float | None
    bound_s: float | None
    eta: datetime | None
    text: str
    deliveries: tuple[DeliveryRecord, ...] = ()
