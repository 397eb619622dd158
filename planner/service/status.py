"""What the scheduler is doing with each pipeline, as ``planner status`` shows it.

One document per pipeline, read from the history at ``now`` (times ISO 8601 with offset,
seconds rounded to the millisecond)::

    {"pipeline",
     "leader": {"owner_id", "host", "pid", "heartbeat_at", "expires_at", "alive"} | null,
     "state": "running" | "deferred" | "idle", "run_id",
     "last_run": {"run_id", "status", "started_at", "finished_at", "duration_s",
                  "predicted_s", "bound_s"} | null,
     "next_start", "next_reason", "decided_at",
     "last_decision": {"kind", "at", "reason"} | null}

- ``leader``: the daemon that schedules the pipeline (its ``leaders`` row, expired or
  not; ``alive`` while ``expires_at`` is after the lease clock's now: the database
  server's time on PostgreSQL, where the row's times come from, else ``now``);
- ``state``: ``running`` while a run of the pipeline has status ``running`` and holds the
  pipeline's run lease, not expired (``run_id`` names it; ``null`` otherwise); else
  ``deferred`` when the newest decision about it is of kind ``deferred``; else ``idle``;
- ``last_run``: the newest run other than the one running (a run still marked
  ``running`` whose lease expired shows here as it is), with the prediction of its plan
  (as ``planner runs``);
- ``next_start``, ``next_reason``, ``decided_at``: the newest ``scheduled`` decision's
  next start, reason and time (``null`` without one);
- ``last_decision``: the newest decision of any kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from planner.clock import ensure_utc
from planner.service.views import run_summary
from planner.status import NEXT_START_KINDS, DecisionKind

if TYPE_CHECKING:
    from planner.history import DecisionRecord, HistoryStore, LeaseHolder, RunRecord

__all__ = ["pipeline_status"]

_RUN_FIELDS = (
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "duration_s",
    "predicted_s",
    "bound_s",
)


def pipeline_status(
    store: HistoryStore, pipelines: Sequence[str] | None, now: datetime
) -> list[dict[str, Any]]:
    """The status document of each pipeline in ``pipelines`` (in that order), or, when
    ``None``, of every pipeline with a leader row, a decision or a run (sorted by name)."""
    now = ensure_utc(now)
    if pipelines is None:
        leaders = store.leaders()
        newest = store.last_decisions(None)
        names = sorted(set(leaders) | set(newest) | set(store.run_pipelines()))
    else:
        names = list(dict.fromkeys(pipelines))
        leaders = store.leaders(names)
        newest = store.last_decisions(names)
    if not names:
        return []
    now = store.lease_time(now)  # lease rows are judged on their own clock
    scheduled = store.last_decisions(names, NEXT_START_KINDS)
    recent = {name: store.list_runs(name, limit=2) for name in names}
    active = {name: _active_run(store, runs, now) for name, runs in recent.items()}
    last = {
        name: next((r for r in runs if r.run_id != active[name]), None)
        for name, runs in recent.items()
    }
    predictions = store.run_predictions(run_ids=[r.run_id for r in last.values() if r])
    documents = []
    for name in names:
        run = last[name]
        documents.append(
            {
                "pipeline": name,
                "leader": _leader(leaders.get(name), now),
                "state": _state(store, active[name], newest.get(name)),
                "run_id": active[name],
                "last_run": _last_run(run, predictions.get(run.run_id)) if run else None,
                **_next(scheduled.get(name)),
                "last_decision": _decision(newest.get(name)),
            }
        )
    return documents


def _active_run(store: HistoryStore, runs: Sequence[RunRecord], now: datetime) -> str | None:
    """The id of the newest run if it is ``running`` and holds an unexpired run lease."""
    if not runs or runs[0].status != "running":
        return None
    lease = store.get_lease(runs[0].pipeline)
    if lease is None or lease.expires_at <= now:
        return None
    if lease.run_id is not None and lease.run_id != runs[0].run_id:
        return None
    return runs[0].run_id


def _state(store: HistoryStore, active: str | None, newest: DecisionRecord | None) -> str:
    if active is not None:
        return "running"
    if (
        newest is not None
        and newest.kind == DecisionKind.STARTED
        and newest.run_id is not None
        and store.get_run(newest.run_id) is None
    ):
        return "starting"  # the daemon started planner run; its run row comes next
    if newest is not None and newest.kind == DecisionKind.DEFERRED:
        return "deferred"
    return "idle"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _leader(holder: LeaseHolder | None, now: datetime) -> dict[str, Any] | None:
    if holder is None:
        return None
    return {
        "owner_id": holder.owner_id,
        "host": holder.host,
        "pid": holder.pid,
        "heartbeat_at": _iso(holder.heartbeat_at),
        "expires_at": _iso(holder.expires_at),
        "alive": holder.expires_at > now,
    }


def _last_run(record: RunRecord, prediction: tuple[float, float] | None) -> dict[str, Any]:
    summary = run_summary(record, {}, prediction)
    return {key: summary[key] for key in _RUN_FIELDS}


def _next(decision: DecisionRecord | None) -> dict[str, Any]:
    if decision is None:
        return {"next_start": None, "next_reason": None, "decided_at": None}
    return {
        "next_start": _iso(decision.next_start),
        "next_reason": decision.reason,
        "decided_at": _iso(decision.at),
    }


def _decision(decision: DecisionRecord | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {"kind": decision.kind, "at": _iso(decision.at), "reason": decision.reason}
