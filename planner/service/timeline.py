"""One run on a time line: each attempt that ran as a bar on a slot, against its plan.

The history does not say which worker slot an attempt took, so :func:`assign_slots`
gives each one greedily, in start order (the lowest slot free at the attempt's start): no
two bars of a slot overlap, and no more slots are used than attempts ever ran at once,
which is at most the run's concurrency. :func:`run_timeline` reads a run's attempts and the
plan stored with it and returns one row per attempt that ran; the dashboard's run page and
the analysts' :func:`planner.analysis.gantt.run_gantt` both draw these rows.

A row (seconds from the run's start; times rounded to the microsecond)::

    {"step", "account", "attempt", "status", "start_s", "end_s", "slot",
     "predicted_s", "bound_s", "estimate", "late", "exit_code", "error_class",
     "stderr_tail"}

``predicted_s``, ``bound_s`` and ``estimate`` (where the prediction came from) are the
task's in the newest plan stored with the run (``null`` without one); ``late`` says the bar
is longer than its bound (never for a task planned at the default, which had no history);
``stderr_tail`` is kept for failed, timed-out and interrupted attempts only. An attempt
still going ends at ``now``, or at the run's end when the run has ended.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from planner.errors import UsageError
from planner.status import AttemptStatus

if TYPE_CHECKING:
    from planner.history import AttemptRecord, HistoryStore, RunRecord

__all__ = ["assign_slots", "planned_tasks_of", "run_timeline", "timeline_rows"]

_NO_HISTORY = "default"
_FAILED = frozenset({AttemptStatus.FAILED, AttemptStatus.TIMED_OUT, AttemptStatus.INTERRUPTED})

TaskKey = tuple[str, str | None]


def assign_slots(spans: Sequence[tuple[float, float]]) -> list[int]:
    """A slot per ``(start, end)`` span: in start order, the lowest slot whose last span
    has ended (``end <= start``). The slots used are as many as spans ever overlap."""
    order = sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1], i))
    slots = [0] * len(spans)
    free: list[int] = []  # slots free now, lowest first
    busy: list[tuple[float, int]] = []  # (end, slot) of the spans running
    used = 0
    for index in order:
        start, end = spans[index]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            slot = heapq.heappop(free)
        else:
            slot, used = used, used + 1
        slots[index] = slot
        heapq.heappush(busy, (max(start, end), slot))
    return slots


def planned_tasks_of(store: HistoryStore, pipeline: str, run_id: str) -> dict[TaskKey, Any]:
    """(step, account) -> the task's entry in the newest plan stored with ``run_id``
    (``{"predicted_s", "bound_s", "source", ...}``); empty without a stored plan."""
    plans = store.plans(pipeline, limit=1, run_id=run_id)
    document = plans[0].document if plans else {}
    return {(t["step"], t.get("account")): t for t in document.get("tasks", [])}


def _ran(attempt: AttemptRecord) -> bool:
    """Whether an attempt took time on a slot (not skipped, not cancelled unstarted)."""
    if attempt.status == AttemptStatus.SKIPPED:
        return False
    unstarted = attempt.pid is None and not attempt.duration_s
    return not (attempt.status == AttemptStatus.CANCELLED and unstarted)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def timeline_rows(
    run: RunRecord,
    attempts: Sequence[AttemptRecord],
    planned: Mapping[TaskKey, Mapping[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """The rows of the module docstring for ``run``'s ``attempts`` (any order; rows in
    start order) and its plan's tasks ``planned`` (:func:`planned_tasks_of`)."""
    moment = run.finished_at or now
    ran = sorted((a for a in attempts if _ran(a)), key=lambda a: (a.started_at, a.attempt_id))
    spans = [
        (
            (a.started_at - run.started_at).total_seconds(),
            ((a.finished_at or moment) - run.started_at).total_seconds(),
        )
        for a in ran
    ]
    rows: list[dict[str, Any]] = []
    for a, (start, stop), slot in zip(ran, spans, assign_slots(spans), strict=True):
        task = planned.get((a.step, a.account))
        predicted = _float(task.get("predicted_s")) if task else None
        bound = _float(task.get("bound_s")) if task else None
        estimate = str(task.get("source")) if task and task.get("source") else None
        end = max(start, stop)
        rows.append(
            {
                "step": a.step,
                "account": a.account,
                "attempt": a.attempt,
                "status": a.status,
                "start_s": round(start, 6),
                "end_s": round(end, 6),
                "slot": slot,
                "predicted_s": predicted,
                "bound_s": bound,
                "estimate": estimate,
                "late": bound is not None and estimate != _NO_HISTORY and end - start > bound,
                "exit_code": a.exit_code,
                "error_class": a.error_class,
                "stderr_tail": a.stderr_tail if a.status in _FAILED else None,
            }
        )
    return rows


def run_timeline(store: HistoryStore, run_id: str, now: datetime) -> list[dict[str, Any]]:
    """The timeline rows of ``run_id`` (``UsageError`` when the run is unknown)."""
    run = store.get_run(run_id)
    if run is None:
        raise UsageError(run_id, f"no such run in {store.url}")
    attempts = store.attempts_for_run(run_id)
    return timeline_rows(run, attempts, planned_tasks_of(store, run.pipeline, run_id), now)
