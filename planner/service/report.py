"""The execution report: the use case behind ``planner report`` (and, next, the dashboard).

:func:`build_report` reads the history over the period up to the instance's clock's
``now`` and returns one document, printing and storing nothing. The six sections come
first, in this order, each present even when empty; then ``pipeline`` (null: all),
``period`` (``from``, ``to``, ``seconds``), ``history`` (the URL) and ``notes``:

- ``current``: every run still ``running`` (whenever it started): ``Progress.as_json()``
  of :func:`planner.service.monitor.run_progress` plus ``pipeline``, ``started_at``,
  ``host`` and ``eta_in_s`` (ETA minus ``now``; negative: overdue);
- ``steps``: per pipeline and step, the attempts started in the period: ``runs``,
  ``attempts`` (finished; skipped ones left out), ``tasks``/``succeeded`` (a task of a
  run counts by its last finished attempt), ``success_rate``, ``p50_s``/``p95_s`` of the
  succeeded attempts, ``trend``: the last third of the period's median over the first
  third's (``ratio``; ``word`` rising above 1.1, falling below 0.9, else steady; null
  when a third has none);
- ``prediction``: per pipeline, the tasks that succeeded in its runs of the period
  against their run's stored plan (MdAPE, ``coverage`` within the bound, its ``target``),
  overall and per step, and the model that serves (``model``, ``serving``);
- ``health``: CPU, memory, the state dir's disk, the database's size;
- ``alerts``: fired in the period, oldest first: the webhook body's keys plus
  ``deliveries`` (sink, status);
- ``recommendations``: the plan's advice with its numbers, with the pipeline file only.

Fractions are rounded to 3 decimals and seconds to the millisecond: front ends print the
document's figures.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.defaults import QUANTILE, STATE_DIR
from planner.errors import ModelError, PlannerError, UsageError

if TYPE_CHECKING:
    import pandas as pd

    from planner.config import Pipeline
    from planner.history import AlertRecord, HistoryStore, RunRecord
    from planner.monitoring.drift import Quality
    from planner.service.instance import Instance

__all__ = [
    "CPU_SAMPLE_S",
    "DEFAULT_PERIOD_S",
    "FALLING",
    "RISING",
    "SECTIONS",
    "Period",
    "build_report",
    "empty_report",
    "trend_word",
]

#: The sections of the report, in the order of its document.
SECTIONS = ("current", "steps", "prediction", "health", "alerts", "recommendations")
#: The period of a report when none is given: 7 days.
DEFAULT_PERIOD_S = 7 * 86400.0
#: A step's trend ratio above this is ``rising``, below :data:`FALLING` ``falling``.
RISING = 1.1
FALLING = 0.9
#: Seconds ``psutil.cpu_percent`` samples the CPU for the health section.
CPU_SAMPLE_S = 0.2

_NO_HISTORY = "default"  # the plan's source of a task planned without history
_UNFINISHED = ("running",)
_NOT_RUN = ("skipped",)


@dataclass(frozen=True)
class Period:
    """The ``seconds`` up to ``end`` (aware UTC)."""

    end: datetime
    seconds: float

    @property
    def start(self) -> datetime:
        return self.end - timedelta(seconds=self.seconds)

    def as_json(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "seconds": self.seconds}


def build_report(
    instance: Instance,
    *,
    pipeline: str | None = None,
    definition: Pipeline | None = None,
    period_s: float = DEFAULT_PERIOD_S,
    cpu_sample_s: float = CPU_SAMPLE_S,
) -> dict[str, Any]:
    """The report of ``pipeline`` (a name in the history; ``definition``, the pipeline
    file, when known; neither: every pipeline in the history) over the ``period_s``
    seconds up to the instance's ``now``. See the module docstring."""
    if not period_s > 0:
        raise UsageError("--since", f"the period must be longer than 0 s, got {period_s:g}")
    name = definition.name if definition is not None else pipeline
    store = instance.store
    period = Period(instance.clock.now(), period_s)
    runs = store.list_runs(name)
    frame = store.attempts_frame(pipeline=name, since=period.start, until=period.end)
    alerts = [a for a in store.alerts(pipeline=name, since=period.start) if a.at <= period.end]
    notes: list[str] = []
    if name is not None and not (runs or len(frame) or alerts):
        notes.append(f"no runs, attempts or alerts of pipeline {name!r} in {store.url}")
    names = _pipelines(name, runs, frame, alerts, period)
    sections = {
        "current": _current(store, runs, period.end, definition),
        "steps": _steps(frame, period, definition),
        "prediction": [_prediction(instance, p, runs, period, definition) for p in names],
        "health": _health(store, _state_dir(store.url, definition), cpu_sample_s),
        "alerts": [_alert(record) for record in alerts],
        "recommendations": _recommendations(instance, definition, period.end, notes),
    }
    about = {"pipeline": name, "period": period.as_json(), "history": store.url}
    return _document(sections, **about, notes=notes)


def empty_report(
    *, pipeline: str | None, history: str, now: datetime, period_s: float, note: str
) -> dict[str, Any]:
    """The report of a history that does not exist: every section empty, ``note`` says why."""
    sections: dict[str, Any] = {key: [] for key in SECTIONS}
    sections["health"] = {}
    about = {"pipeline": pipeline, "period": Period(now, period_s).as_json(), "history": history}
    return _document(sections, **about, notes=[note])


def trend_word(ratio: float | None) -> str | None:
    """``rising`` above :data:`RISING`, ``falling`` below :data:`FALLING`, else ``steady``."""
    if ratio is None:
        return None
    return "rising" if ratio > RISING else "falling" if ratio < FALLING else "steady"


def _document(sections: Mapping[str, Any], **about: Any) -> dict[str, Any]:
    """The sections in their order, then ``pipeline``, ``period``, ``history``, ``notes``."""
    return {**{key: sections[key] for key in SECTIONS}, **about}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _pipelines(
    name: str | None,
    runs: Sequence[RunRecord],
    frame: pd.DataFrame,
    alerts: Sequence[AlertRecord],
    period: Period,
) -> list[str]:
    """The pipelines the report covers: ``name``, else every one with something to say."""
    if name is not None:
        return [name]
    found = {r.pipeline for r in runs if r.status == "running" or r.started_at >= period.start}
    if len(frame):
        found.update(str(p) for p in frame["pipeline"].dropna().unique())
    found.update(a.pipeline for a in alerts)
    return sorted(found)


# -- current --------------------------------------------------------------------------------


def _current(
    store: HistoryStore, runs: Sequence[RunRecord], now: datetime, definition: Pipeline | None
) -> list[dict[str, Any]]:
    from planner.service.monitor import run_progress

    out = []
    for record in runs:
        if record.status != "running":
            continue
        deps = None  # the step graph, when the file is known: the ETA respects it
        if definition is not None and definition.name == record.pipeline:
            deps = {step.id: list(step.depends_on) for step in definition.steps}
        progress = run_progress(store, record.run_id, now, deps)
        if progress is None:  # finished and removed between the two reads
            continue
        eta_in = (progress.eta - now).total_seconds() if progress.eta is not None else None
        about = {"pipeline": record.pipeline, "started_at": record.started_at.isoformat()}
        out.append({**about, "host": record.host, **progress.as_json(), "eta_in_s": _round(eta_in)})
    return out


# -- steps ----------------------------------------------------------------------------------


def _steps(
    frame: pd.DataFrame, period: Period, definition: Pipeline | None
) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    ran = frame[~frame["status"].isin(_NOT_RUN)]
    rows = [
        _step_row(str(pipeline), str(step), group, period)
        for (pipeline, step), group in ran.groupby(["pipeline", "step"], sort=False)
        if not group["status"].isin(_UNFINISHED).all()  # only running so far: in `current`
    ]
    # by pipeline; then the file's step order, else (a stable sort) the order of first start
    orders = {p: _order(definition, p) for p in {r["pipeline"] for r in rows}}
    rows.sort(key=lambda r: (r["pipeline"], orders[r["pipeline"]].get(r["step"], math.inf)))
    return rows


def _order(definition: Pipeline | None, pipeline: str) -> dict[str, int]:
    """Step id -> its place in the pipeline file (empty without the file)."""
    if definition is None or definition.name != pipeline:
        return {}
    return {step.id: i for i, step in enumerate(definition.steps)}


def _step_row(pipeline: str, step: str, group: pd.DataFrame, period: Period) -> dict[str, Any]:
    import numpy as np

    finished = group[~group["status"].isin(_UNFINISHED)]
    last = group.sort_values(["attempt", "started_at", "attempt_id"]).drop_duplicates(
        ["run_id", "account"], keep="last"
    )
    last = last[~last["status"].isin(_UNFINISHED)]
    succeeded = int((last["status"] == "succeeded").sum())
    ok = finished[(finished["status"] == "succeeded") & finished["duration_s"].notna()]
    durations = ok["duration_s"].to_numpy(dtype=float)
    third = timedelta(seconds=period.seconds / 3)
    first_median = _median(ok.loc[ok["started_at"] < period.start + third, "duration_s"])
    last_median = _median(ok.loc[ok["started_at"] >= period.end - third, "duration_s"])
    ratio = None
    if first_median and last_median is not None:
        ratio = _round(last_median / first_median)
    return {
        "pipeline": pipeline,
        "step": step,
        "runs": int(finished["run_id"].nunique()),
        "attempts": len(finished),
        "tasks": len(last),
        "succeeded": succeeded,
        "success_rate": _round(succeeded / len(last)) if len(last) else None,
        "p50_s": _round(float(np.percentile(durations, 50))) if len(durations) else None,
        "p95_s": _round(float(np.percentile(durations, 95))) if len(durations) else None,
        "trend": {
            "ratio": ratio,
            "word": trend_word(ratio),
            "first_median_s": _round(first_median),
            "last_median_s": _round(last_median),
        },
    }


def _median(values: pd.Series) -> float | None:
    return float(values.median()) if len(values) else None


# -- prediction -----------------------------------------------------------------------------


def _prediction(
    instance: Instance,
    pipeline: str,
    runs: Sequence[RunRecord],
    period: Period,
    definition: Pipeline | None,
) -> dict[str, Any]:
    from planner.monitoring.drift import planned_tasks, prediction_quality

    store = instance.store
    wanted = {
        r.run_id
        for r in runs
        if r.pipeline == pipeline and period.start <= r.started_at <= period.end
    }
    tasks = planned_tasks(store, pipeline, run_ids=wanted)
    rows = [(run_id, p, b, a) for run_id, _step, p, b, a in tasks]
    by_step: dict[str, list[tuple[str, float, float, float]]] = {}
    for run_id, step, p, b, a in tasks:
        by_step.setdefault(step, []).append((run_id, p, b, a))
    own = definition is not None and definition.name == pipeline
    target = definition.schedule.quantile if definition is not None and own else QUANTILE
    order = _order(definition, pipeline)
    steps = sorted(by_step, key=lambda s: (order.get(s, math.inf), s))
    model, serving = _serving(instance, pipeline)
    return {
        "pipeline": pipeline,
        "target": target,
        **_quality(prediction_quality(rows)),
        "steps": [{"step": step, **_quality(prediction_quality(by_step[step]))} for step in steps],
        "model": model,
        "serving": serving,
    }


def _quality(quality: Quality) -> dict[str, Any]:
    return {
        "runs": quality.runs,
        "tasks": quality.tasks,
        "mdape": _round(quality.mdape),
        "coverage": _round(quality.coverage),
    }


def _serving(instance: Instance, pipeline: str) -> tuple[dict[str, Any] | None, str]:
    """The live model of ``pipeline`` (checked as loading checks it: ``trusted``) and one
    line on what serves its predictions."""
    from planner.service.training import list_models

    folder = instance.models_dir
    try:
        entries = list_models(instance, folder, pipeline, verify=True) if folder.is_dir() else []
    except ModelError as exc:
        return None, f"baselines: the models in {folder} cannot be read ({exc.what})"
    live = [e for e in entries if e.get("current") and "error" not in e]
    if not live:
        return None, f"baselines: no live model of {pipeline} in {folder}"
    entry = live[-1]
    card = entry["serving"] if isinstance(entry.get("serving"), dict) else {}
    model = {"id": entry["id"], "kind": entry.get("kind"), "method": card.get("method")}
    model.update(reason=card.get("reason"), trusted=bool(entry.get("verified")))
    model["problem"] = entry.get("problem")
    what = f"model {entry['id']}" + (f" ({model['kind']})" if model["kind"] else "")
    if not model["trusted"]:
        return model, f"baselines: {what} is live but not trusted ({model['problem']})"
    if model["method"] not in (None, "model"):
        return model, f"{model['method']} serves for {what}: {model['reason']}"
    return model, f"{what} serves"


# -- health ---------------------------------------------------------------------------------


def _state_dir(url: str, definition: Pipeline | None) -> Path:
    """The pipeline file's state dir, else the SQLite history's folder, else the default."""
    if definition is not None:
        return Path(definition.state_dir)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        if path and path != ":memory:":
            return Path(path).parent
    return Path(STATE_DIR)


def _health(store: HistoryStore, state_dir: Path, cpu_sample_s: float) -> dict[str, Any]:
    import psutil

    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    memory = psutil.virtual_memory()
    existing = state_dir.resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    disk = shutil.disk_usage(existing)
    cpu = round(psutil.cpu_percent(interval=cpu_sample_s), 1)
    return {
        "cpu": {"percent": cpu, "load_avg": load, "cores": os.cpu_count()},
        "memory": {
            "used_percent": round(float(memory.percent), 1),
            "available_mb": round(memory.available / 2**20, 1),
        },
        "disk": {
            "path": str(state_dir),
            "free_gb": round(disk.free / 1e9, 3),
            "free_percent": round(100.0 * disk.free / disk.total, 1) if disk.total else None,
        },
        "database": {"url": store.url, "size_bytes": store.database_size()},
    }


# -- alerts and recommendations -------------------------------------------------------------


def _alert(record: AlertRecord) -> dict[str, Any]:
    from planner.monitoring.alerts import Alert

    body = Alert.from_record(record).body()
    body["deliveries"] = [{"sink": d.sink, "status": d.status} for d in record.deliveries]
    return body


def _recommendations(
    instance: Instance, definition: Pipeline | None, now: datetime, notes: list[str]
) -> list[dict[str, Any]]:
    if definition is None:
        notes.append(
            "recommendations need the pipeline file (planning reads its steps and accounts): "
            "name it with --pipeline FILE"
        )
        return []
    from planner.planning.plan import plan_to_json
    from planner.service.planning import make_plan

    try:
        plan = make_plan(instance, definition, now=now)
    except PlannerError as exc:  # the report still says everything else
        notes.append(f"no recommendations: planning failed: {'; '.join(exc.lines())}")
        return []
    notes.extend(f"plan: {warning}" for warning in plan.warnings)
    recommendations: list[dict[str, Any]] = plan_to_json(plan)["recommendations"]
    return recommendations
