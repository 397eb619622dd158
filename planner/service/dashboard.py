"""The documents of the dashboard: every page and every ``/api`` answer, read from the
history at ``now`` (times ISO 8601 with offset, seconds as floats).

Each function takes the :class:`~planner.service.instance.Instance` and ``now`` and
returns a JSON-ready dict; where a command's ``--json`` gives the same thing, the part is
that document unchanged (``planner status``, ``planner runs``, ``planner show``):

- :func:`overview` ``{"history", "now", "pipelines": [...]}``: each pipeline's
  ``planner status`` document plus ``progress`` (of its running run, else ``null``),
  ``last_run_fit`` and ``alerts`` (see :func:`overview`);
- :func:`pipeline_detail`: one pipeline's overview entry and its last runs;
- :func:`live`: the running runs' progress, what the live updates send;
- :func:`run_detail`: ``planner show --json`` plus the timeline of a Gantt chart;
- :func:`pipeline_history` (:mod:`planner.service.trend`): ``planner runs --json`` rows
  of one pipeline, the collisions and deferrals, and each step's median per run;
- :func:`model_quality` (:mod:`planner.service.quality`): predicted vs actual, bound
  coverage against its target, error per step, the live model's card;
- :func:`alerts_page`: stored alerts, newest first, with their delivery per sink.

An unknown run or pipeline is a ``UsageError`` (the web answers 404).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from planner.clock import ensure_utc
from planner.errors import UsageError
from planner.service.monitor import run_progress
from planner.service.quality import QUALITY_RUNS, model_quality
from planner.service.status import pipeline_status
from planner.service.timeline import planned_tasks_of, timeline_rows
from planner.service.trend import pipeline_history
from planner.service.views import runs_document, show_document

if TYPE_CHECKING:
    from planner.history import AlertRecord, HistoryStore
    from planner.service.instance import Instance

__all__ = [
    "QUALITY_RUNS",
    "alert_document",
    "alerts_page",
    "live",
    "model_quality",
    "overview",
    "pipeline_detail",
    "pipeline_history",
    "run_detail",
]

_ALERT_LEVELS = ("critical", "warning", "info")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# -- the overview ------------------------------------------------------------------------


def overview(
    instance: Instance, now: datetime, pipelines: Sequence[str] | None = None
) -> dict[str, Any]:
    """``{"history", "now", "pipelines": [...]}``: ``planner status --json`` (of
    ``pipelines``, default every pipeline the history knows), each pipeline's document
    with three keys more:

    - ``progress``: while ``state`` is ``running``, :func:`run_progress` of its run
      (``run_id``, ``status``, ``elapsed_s``, ``tasks`` {done, running, total},
      ``predicted_s``, ``bound_s``, ``eta``, ``late``) plus ``percent`` (0-100: the
      elapsed share of the time from the start to the ETA; without an ETA, the share of
      tasks done) and ``remaining_s`` (to the ETA); else ``null``;
    - ``last_run_fit``: the last run's duration against its plan: ``within_prediction``,
      ``within_bound``, ``over_bound`` (``null``: no duration, no plan, or a plan made
      only of default estimates, the first run's);
    - ``alerts``: ``{"open", "critical", "warning", "info", "undelivered", "since"}``: the
      alerts fired since the newest run started (the running one, else the last), the
      ones that still concern what the pipeline is doing; ``undelivered`` counts those with
      a delivery not ``sent``.
    """
    now = ensure_utc(now)
    store = instance.store
    rows = pipeline_status(store, pipelines, now)
    return {
        "history": instance.url,
        "now": now.isoformat(),
        "pipelines": [_with_live(store, row, now) for row in rows],
    }


def _with_live(store: HistoryStore, row: dict[str, Any], now: datetime) -> dict[str, Any]:
    progress = None
    since: datetime | None = None
    if row["state"] == "running" and row["run_id"] is not None:
        progress = _progress(store, row["run_id"], now)
        record = store.get_run(row["run_id"])
        since = record.started_at if record is not None else None
    elif row["last_run"] is not None:
        since = datetime.fromisoformat(row["last_run"]["started_at"])
    alerts = store.alerts(row["pipeline"], since=since) if since is not None else []
    return {
        **row,
        "progress": progress,
        "last_run_fit": _fit(store, row["pipeline"], row["last_run"]),
        "alerts": _alert_counts(alerts, since),
    }


def _progress(store: HistoryStore, run_id: str, now: datetime) -> dict[str, Any] | None:
    progress = run_progress(store, run_id, now)
    if progress is None:
        return None
    document: dict[str, Any] = progress.as_json()
    remaining = None
    percent = None
    if progress.eta is not None:
        remaining = max(0.0, (progress.eta - now).total_seconds())
        whole = progress.elapsed_s + remaining
        percent = 100.0 * progress.elapsed_s / whole if whole > 0 else 100.0
    elif progress.total:
        percent = 100.0 * progress.done / progress.total
    if percent is not None and progress.status == "running":
        percent = min(percent, 99.9)  # done only when the run says so
    document["percent"] = _round(percent, 1)
    document["remaining_s"] = _round(remaining)
    return document


def _fit(store: HistoryStore, pipeline: str, last: dict[str, Any] | None) -> str | None:
    if last is None or last["duration_s"] is None or last["predicted_s"] is None:
        return None
    if _only_defaults(store, pipeline, last["run_id"]):
        return None  # planned at the default estimate: there was no prediction to meet
    if last["duration_s"] <= last["predicted_s"]:
        return "within_prediction"
    if last["bound_s"] is not None and last["duration_s"] <= last["bound_s"]:
        return "within_bound"
    return "over_bound"


def _only_defaults(store: HistoryStore, pipeline: str, run_id: str) -> bool:
    """Whether every task of the run's stored plan was at the default estimate."""
    from planner.planning.model import DEFAULT_SOURCE

    stored = store.plans(pipeline, limit=1, run_id=run_id)
    tasks: list[dict[str, Any]] = (stored[0].document.get("tasks") or []) if stored else []
    return bool(tasks) and all(t.get("source") == DEFAULT_SOURCE for t in tasks)


def _alert_counts(alerts: Sequence[AlertRecord], since: datetime | None) -> dict[str, Any]:
    counts: dict[str, Any] = {level: 0 for level in _ALERT_LEVELS}
    for alert in alerts:
        counts[alert.level] = counts.get(alert.level, 0) + 1
    undelivered = sum(1 for a in alerts if any(d.status != "sent" for d in a.deliveries))
    return {"open": len(alerts), **counts, "undelivered": undelivered, "since": _iso(since)}


def pipeline_detail(
    instance: Instance, pipeline: str, now: datetime, *, runs: int = 10
) -> dict[str, Any]:
    """One pipeline's :func:`overview` entry (``"pipeline"``: that document, plus
    ``"history"`` and ``"now"``) and ``"runs"``: its last ``runs`` runs as
    ``planner runs --json`` rows. ``UsageError`` when the history does not know it."""
    document = overview(instance, now, [pipeline])
    (entry,) = document["pipelines"]
    known = (entry["leader"], entry["last_decision"], entry["last_run"], entry["run_id"])
    if all(value is None for value in known):
        raise UsageError(pipeline, f"no such pipeline in {instance.url}")
    return {
        "history": document["history"],
        "now": document["now"],
        "pipeline": entry,
        "runs": runs_document(instance.store, pipeline, runs)["runs"],
    }


def live(instance: Instance, now: datetime) -> dict[str, Any]:
    """``{"now", "runs": [{"pipeline", "state", "run_id", "progress"}]}``: every pipeline
    running or starting now, with the progress of :func:`overview` (what the dashboard's
    live updates send every second or two). Only the progress is read: not the alerts
    nor the last run's plan that :func:`overview` adds."""
    now = ensure_utc(now)
    store = instance.store
    runs = []
    for row in pipeline_status(store, None, now):
        if row["state"] not in ("running", "starting"):
            continue
        running = row["state"] == "running" and row["run_id"] is not None
        progress = _progress(store, row["run_id"], now) if running else None
        runs.append({**{k: row[k] for k in ("pipeline", "state", "run_id")}, "progress": progress})
    return {"now": now.isoformat(), "runs": runs}


# -- a run -------------------------------------------------------------------------------


def run_detail(instance: Instance, run_id: str, now: datetime) -> dict[str, Any]:
    """``planner show --json`` of ``run_id`` (``run``, ``attempts``) plus:

    - ``timeline``: ``{"rows", "slots", "span_s"}``, the rows of
      :mod:`planner.service.timeline` (one bar per attempt that ran, by start), how many
      slots they use and the seconds from the run's start to its end (or ``now``);
    - ``progress``: :func:`overview`'s progress while the run is ``running``, else ``null``;
    - ``retries``: each task tried more than once: ``{"step", "account", "attempts",
      "status"}`` (its last attempt's status);
    - ``late``: how many bars ran past their bound.

    ``UsageError`` when the run is unknown."""
    now = ensure_utc(now)
    store = instance.store
    document = show_document(store, run_id)
    record = store.get_run(run_id)
    assert record is not None  # show_document found it
    rows = timeline_rows(
        record,
        store.attempts_for_run(run_id),
        planned_tasks_of(store, record.pipeline, run_id),
        now,
    )
    end = record.finished_at or now
    tries: dict[tuple[str, str | None], list[str]] = {}
    for attempt in document["attempts"]:
        tries.setdefault((attempt["step"], attempt["account"]), []).append(attempt["status"])
    return {
        **document,
        "timeline": {
            "rows": rows,
            "slots": max((r["slot"] for r in rows), default=-1) + 1,
            "span_s": round(max(0.0, (end - record.started_at).total_seconds()), 3),
        },
        "progress": _progress(store, run_id, now) if record.status == "running" else None,
        "retries": [
            {"step": step, "account": account, "attempts": len(statuses), "status": statuses[-1]}
            for (step, account), statuses in tries.items()
            if len(statuses) > 1
        ],
        "late": sum(1 for r in rows if r["late"]),
    }


# -- alerts ------------------------------------------------------------------------------


def alert_document(alert: AlertRecord) -> dict[str, Any]:
    """One stored alert with its deliveries (one per sink)."""
    return {
        "id": alert.alert_id,
        "pipeline": alert.pipeline,
        "run_id": alert.run_id,
        "step": alert.step,
        "account": alert.account,
        "level": alert.level,
        "kind": alert.kind,
        "text": alert.text,
        "at": _iso(alert.at),
        "elapsed_s": alert.elapsed_s,
        "predicted_s": alert.predicted_s,
        "bound_s": alert.bound_s,
        "eta": _iso(alert.eta),
        "deliveries": [
            {
                "sink": d.sink,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "updated_at": _iso(d.updated_at),
                "sent_at": _iso(d.sent_at),
            }
            for d in alert.deliveries
        ],
    }


def alerts_page(
    instance: Instance, now: datetime, *, pipeline: str | None = None, limit: int = 200
) -> dict[str, Any]:
    """``{"now", "pipeline", "total", "counts": {level: n}, "alerts": [...]}``: the newest
    ``limit`` stored alerts (of one pipeline, or all), newest first, each as
    :func:`alert_document`; ``total`` and ``counts`` cover every stored alert."""
    now = ensure_utc(now)
    every = instance.store.alerts(pipeline)
    counts: dict[str, int] = {level: 0 for level in _ALERT_LEVELS}
    for alert in every:
        counts[alert.level] = counts.get(alert.level, 0) + 1
    newest = sorted(every, key=lambda a: (a.at, a.alert_id), reverse=True)[: max(limit, 0)]
    return {
        "now": now.isoformat(),
        "pipeline": pipeline,
        "total": len(every),
        "counts": counts,
        "alerts": [alert_document(a) for a in newest],
    }
