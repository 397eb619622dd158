"""Views of the history that every front end shows: the runs list and one run.

The documents are the ones ``planner runs --json`` and ``planner show --json`` print
(times ISO 8601 with offset; seconds rounded to the millisecond)::

    {"runs": [{"run_id", "pipeline", "status", "started_at", "finished_at", "duration_s",
               "predicted_s", "bound_s", "concurrency", "tasks": {status: count}}]}
    {"run": {...as above...}, "attempts": [{"step", "account", "attempt", "status",
     "started_at", "finished_at", "duration_s", "exit_code", "error_class", "peak_rss_mb",
     "cpu_s", "stderr_tail"}]}

``predicted_s`` and ``bound_s`` come from the plan stored with the run (``null`` for a run
without one); ``concurrency`` is the limit the run used; ``stderr_tail`` is the end of a
failed attempt's log (``null`` for the others).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from planner.errors import UsageError

if TYPE_CHECKING:
    from planner.history import AttemptRecord, HistoryStore, RunRecord

__all__ = ["attempt_document", "run_summary", "runs_document", "show_document"]

_FAILED = frozenset({"failed", "timed_out", "interrupted"})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None else None


def run_summary(
    record: RunRecord,
    counts: dict[str, int],
    prediction: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """One run as in ``planner runs --json``; ``prediction``: its plan's (predicted, bound)."""
    predicted, bound = prediction if prediction is not None else (None, None)
    return {
        "run_id": record.run_id,
        "pipeline": record.pipeline,
        "status": record.status,
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "duration_s": _round(record.duration_s),
        "predicted_s": _round(predicted),
        "bound_s": _round(bound),
        "concurrency": record.concurrency,
        "tasks": dict(sorted(counts.items())),
    }


def attempt_document(a: AttemptRecord, *, note: bool = False) -> dict[str, Any]:
    """One attempt as in ``planner show --json`` (``note``: add its reason, for tables)."""
    row = {
        "step": a.step,
        "account": a.account,
        "attempt": a.attempt,
        "status": a.status,
        "started_at": _iso(a.started_at),
        "finished_at": _iso(a.finished_at),
        "duration_s": _round(a.duration_s),
        "exit_code": a.exit_code,
        "error_class": a.error_class,
        "peak_rss_mb": _round(a.peak_rss_mb, 2),
        "cpu_s": _round(a.cpu_s),
        "stderr_tail": a.stderr_tail if a.status in _FAILED else None,
    }
    if note:
        row["note"] = a.reason or ""
    return row


def show_document(store: HistoryStore, run_id: str, *, notes: bool = False) -> dict[str, Any]:
    """The ``planner show --json`` document of ``run_id`` (``UsageError`` when unknown).

    ``notes`` adds each attempt's reason (retry, skip, stop) as ``note``, for the table.
    """
    record = store.get_run(run_id)
    if record is None:
        raise UsageError(run_id, f"no such run in {store.url}")
    from planner.history.records import task_counts

    records = store.attempts_for_run(run_id)
    prediction = store.run_predictions(run_ids=[run_id]).get(run_id)
    return {
        "run": run_summary(record, task_counts(records), prediction),
        "attempts": [attempt_document(a, note=notes) for a in records],
    }


def runs_document(
    store: HistoryStore, pipeline: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    """The ``planner runs --json`` document: runs newest first, with task counts."""
    records = store.list_runs(pipeline, limit=limit)
    ids = [r.run_id for r in records]
    counts = store.runs_task_counts(ids)
    predictions = store.run_predictions(run_ids=ids)
    return {
        "runs": [
            run_summary(r, counts.get(r.run_id, {}), predictions.get(r.run_id)) for r in records
        ]
    }
