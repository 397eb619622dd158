"""A pipeline's runs over time: duration against the plan, collisions and deferrals, and
each step's median per run (the dashboard's history page; see :mod:`planner.service.dashboard`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from statistics import median
from typing import TYPE_CHECKING, Any

from planner.clock import ensure_utc
from planner.errors import UsageError
from planner.service.views import runs_document
from planner.status import AttemptStatus, DecisionKind

if TYPE_CHECKING:
    from planner.history import HistoryStore, RunRecord
    from planner.service.instance import Instance

__all__ = ["pipeline_history"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def pipeline_history(
    instance: Instance, pipeline: str, now: datetime, *, limit: int = 50
) -> dict[str, Any]:
    """``{"pipeline", "now", "runs", "events", "steps"}`` of the last ``limit`` runs:

    - ``runs``: ``planner runs --json`` rows, newest first (``duration_s`` against
      ``predicted_s`` and ``bound_s``: the band of a chart);
    - ``events``: oldest first, ``{"at", "kind", "run_id", "other_pipeline",
      "other_run_id", "overlap_s", "reason"}``: ``overlap`` when a run started while
      another (of any pipeline) ran, ``deferred`` and ``refused`` from the daemon's
      decisions, ``run_collision`` alerts; since the oldest run shown started;
    - ``steps``: ``[{"step", "points": [{"run_id", "started_at", "median_s", "n"}]}]``,
      per step the median duration of its succeeded attempts in each run, oldest first.

    ``UsageError`` when the pipeline has no run."""
    now = ensure_utc(now)
    store = instance.store
    runs = runs_document(store, pipeline, limit)["runs"]
    if not runs:
        raise UsageError(pipeline, f"no runs of this pipeline in {instance.url}")
    records = store.list_runs(pipeline, limit=limit)
    since = min(r.started_at for r in records)
    return {
        "pipeline": pipeline,
        "now": now.isoformat(),
        "runs": runs,
        "events": _events(store, pipeline, records, since, now),
        "steps": _step_medians(store, records),
    }


def _events(
    store: HistoryStore,
    pipeline: str,
    mine: Sequence[RunRecord],
    since: datetime,
    now: datetime,
) -> list[dict[str, Any]]:
    events = _overlaps(store.list_runs(), {r.run_id for r in mine}, since, now)
    kinds = (DecisionKind.DEFERRED, DecisionKind.REFUSED)
    for decision in store.decisions(pipeline, kinds=kinds, since=since):
        events.append(_event(decision.at, str(decision.kind), decision.run_id, decision.reason))
    for alert in store.alerts(pipeline, since=since):
        if alert.kind == "run_collision":
            events.append(_event(alert.at, alert.kind, alert.run_id, alert.text))
    events.sort(key=lambda e: (e["at"], e["kind"]))
    return events


def _overlaps(
    every: Sequence[RunRecord], ids: set[str], since: datetime, now: datetime
) -> list[dict[str, Any]]:
    """Every pair of runs (of any pipelines) that ran at once, one of them in ``ids``: a
    sweep by start, where the runs still going overlap the one starting."""
    spans = sorted(
        ((r.started_at, r.finished_at or now, r) for r in every if (r.finished_at or now) > since),
        key=lambda span: (span[0], span[2].run_id),
    )
    active: list[tuple[datetime, datetime, RunRecord]] = []
    events = []
    for start, end, run in spans:
        active = [span for span in active if span[1] > start]
        for _start, other_end, other in active:
            if run.run_id not in ids and other.run_id not in ids:
                continue
            overlap = (min(end, other_end) - start).total_seconds()
            ours, theirs = (run, other) if run.run_id in ids else (other, run)
            events.append(
                _event(
                    start,
                    "overlap",
                    ours.run_id,
                    f"run {run.run_id} ({run.pipeline}) started while run {other.run_id} "
                    f"({other.pipeline}) ran: together {overlap:.1f}s",
                    other=theirs,
                    overlap_s=round(overlap, 3),
                )
            )
        active.append((start, end, run))
    return events


def _event(
    at: datetime,
    kind: str,
    run_id: str | None,
    reason: str,
    *,
    other: RunRecord | None = None,
    overlap_s: float | None = None,
) -> dict[str, Any]:
    return {
        "at": _iso(at),
        "kind": kind,
        "run_id": run_id,
        "other_pipeline": other.pipeline if other is not None else None,
        "other_run_id": other.run_id if other is not None else None,
        "overlap_s": overlap_s,
        "reason": reason,
    }


def _step_medians(store: HistoryStore, records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    steps: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(records, key=lambda r: (r.started_at, r.run_id)):
        durations: dict[str, list[float]] = {}
        for a in store.attempts_for_run(run.run_id):
            if a.status == AttemptStatus.SUCCEEDED and a.duration_s is not None:
                durations.setdefault(a.step, []).append(float(a.duration_s))
        for step, values in durations.items():
            steps.setdefault(step, []).append(
                {
                    "run_id": run.run_id,
                    "started_at": _iso(run.started_at),
                    "median_s": round(median(values), 3),
                    "n": len(values),
                }
            )
    return [{"step": step, "points": points} for step, points in sorted(steps.items())]
