"""The history as DataFrames: attempts, runs, stored plans and their tasks, alerts and the
daemon's decisions, from a history URL, an open store or an instance.

Each loader reads through the store's own methods (no SQL here) and returns a frame whose
columns are listed in its docstring, oldest row first. Times are aware UTC
(``datetime64[us, UTC]``), durations float seconds, a missing value ``NaN``/``<NA>``.

::

    from planner import analysis
    url = analysis.demo_history()          # the demo's history, made if missing
    with analysis.open_history(url) as history:
        frame = analysis.runs(history)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from planner.analysis.columns import TIME, Column, documented, typed_frame
from planner.errors import InputFileError
from planner.status import AttemptStatus

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from planner.history import HistoryStore
    from planner.service.instance import Instance

__all__ = [
    "ALERT_COLUMNS",
    "ATTEMPT_COLUMNS",
    "DECISION_COLUMNS",
    "PLAN_COLUMNS",
    "PLAN_TASK_COLUMNS",
    "RUN_COLUMNS",
    "Source",
    "alerts",
    "attempts",
    "decisions",
    "demo_history",
    "demo_pipeline_file",
    "open_history",
    "plan_tasks",
    "plans",
    "runs",
    "store_of",
]

#: Where the analysis reads from: a history URL, an open store, or an instance.
Source: TypeAlias = "str | HistoryStore | Instance"


def open_history(url: str | None = None) -> HistoryStore:
    """The history store at ``url`` (default: ``$PLANNER_DB``, else ``./.planner``, the
    command line's rule). A SQLite file that does not exist is refused
    (:class:`~planner.errors.InputFileError`) rather than created empty. Close it when done
    (it is a context manager)."""
    from planner.history import HistoryStore, history_url
    from planner.service.locations import history_exists

    target = url or history_url(None)
    if not history_exists(target):
        where = target.removeprefix("sqlite:///")
        raise InputFileError(where, "no history there (run a pipeline, or use demo_history())")
    return HistoryStore(target)


def demo_history(folder: Path | str | None = None, *, runs: int | None = None) -> str:
    """The URL of the demo's history in ``folder``, made first when it has no run: the
    demo pipeline run ``runs`` times (default six, as ``planner demo``: about half a
    minute) through the service layer, each by its plan.

    ``folder`` defaults to ``$PLANNER_DEMO_DIR``, else ``.planner-demo`` at the root of
    this checkout (the folder ``planner demo`` uses from there), wherever Python runs."""
    from planner.service.demo import ensure_demo_history

    return ensure_demo_history(folder) if runs is None else ensure_demo_history(folder, runs)


def demo_pipeline_file(folder: Path | str | None = None) -> Path:
    """The demo's pipeline file in ``folder`` (default as :func:`demo_history`), written
    there when missing."""
    from planner.service.demo import default_demo_dir, demo_pipeline

    state_dir = Path(folder).expanduser().resolve() if folder else default_demo_dir()
    path = state_dir / "demo.yaml"
    return path if path.is_file() else demo_pipeline(state_dir)[0]


@contextmanager
def store_of(source: Source) -> Iterator[HistoryStore]:
    """The store of ``source``: opened with :func:`open_history` (and closed after) for a
    URL, the instance's store for an instance, else ``source`` itself."""
    if isinstance(source, str):
        with open_history(source) as store:
            yield store
        return
    from planner.service.instance import Instance

    yield source.store if isinstance(source, Instance) else source


#: The attempts frame of docs/ARCHITECTURE.md (``planner.history.FRAME_DTYPES``; a test
#: keeps the two equal).
ATTEMPT_COLUMNS: tuple[Column, ...] = (
    Column("attempt_id", "int64", "", "row id"),
    Column("run_id", "string", "", "the run (imports: the source's run or job id)"),
    Column("pipeline", "string", "", "pipeline name"),
    Column("step", "string", "", "step id"),
    Column("account", "string", "", "account (<NA>: a step not per account)"),
    Column("attempt", "int64", "", "1 for the first try of the task"),
    Column("quantity", "float64", "", "the step's quantity (NaN: unknown)"),
    Column("params", "object", "", "the step's parameters, name -> scalar (dict, read-only)"),
    Column("n_accounts", "Int64", "", "accounts in the run"),
    Column("concurrency", "Int64", "tasks", "the run's concurrency limit when it started"),
    Column("host", "string", "", "where it ran"),
    Column("started_at", TIME, "", "when it started"),
    Column("finished_at", TIME, "", "when it ended (NaT: still running)"),
    Column("duration_s", "float64", "s", "wall time (NaN: still running)"),
    Column("status", "string", "", "succeeded, failed, timed_out, cancelled, skipped, ..."),
    Column("exit_code", "Int64", "", "the process's exit code"),
    Column("error_class", "string", "", "the retry policy's class of the error"),
    Column("peak_rss_mb", "float64", "MB", "peak memory of the process tree"),
    Column("cpu_s", "float64", "s", "CPU time of the process tree"),
    Column("load_avg", "float64", "", "1-minute load average at the start"),
    Column("free_mem_mb", "float64", "MB", "free memory at the start"),
    Column("cpu_count", "Int64", "cores", "the machine's cores"),
    Column("source", "string", "", "planner, swf:<file>, csv:<file>, sacct"),
)


@documented(ATTEMPT_COLUMNS)
def attempts(
    source: Source,
    pipeline: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """One row per attempt started in ``[since, until)`` (of ``pipeline``), by start: the
    frame the models learn from (``HistoryStore.attempts_frame``)."""
    with store_of(source) as store:
        return store.attempts_frame(pipeline=pipeline, since=since, until=until)


_STATUS_COLUMNS = tuple(
    Column(f"tasks_{s.value}", "Int64", "tasks", f"tasks whose last attempt is {s.value}")
    for s in AttemptStatus
)

RUN_COLUMNS: tuple[Column, ...] = (
    Column("run_id", "string", "", "the run"),
    Column("pipeline", "string", "", "pipeline name"),
    Column("status", "string", "", "running, succeeded, failed, cancelled, abandoned"),
    Column("started_at", TIME, "", "when the run started"),
    Column("finished_at", TIME, "", "when it ended (NaT: still running)"),
    Column("duration_s", "float64", "s", "wall time of the run (NaN: still running)"),
    Column("predicted_s", "float64", "s", "the run's prediction in its stored plan (NaN: none)"),
    Column("bound_s", "float64", "s", "the calibrated upper bound in that plan (NaN: none)"),
    Column("concurrency", "Int64", "tasks", "the limit it started with (adaptive: moved)"),
    Column("n_accounts", "Int64", "", "accounts in the run"),
    Column("host", "string", "", "where it ran"),
    Column("resumed_from", "string", "", "the run a --resume run resumed (<NA>: none)"),
    Column("tasks", "Int64", "tasks", "tasks with at least one attempt"),
    *_STATUS_COLUMNS,
)


@documented(RUN_COLUMNS)
def runs(source: Source, pipeline: str | None = None) -> pd.DataFrame:
    """One row per run (of ``pipeline``), oldest first, with the plan stored with it and
    its tasks counted by final status (a task's status is its last attempt's)."""
    with store_of(source) as store:
        records = sorted(store.list_runs(pipeline), key=lambda r: (r.started_at, r.run_id))
        ids = [r.run_id for r in records]
        counts = store.runs_task_counts(ids)
        predictions = store.run_predictions(run_ids=ids)
    rows = []
    for record in records:
        predicted, bound = predictions.get(record.run_id, (None, None))
        tasks = counts.get(record.run_id, {})
        row: dict[str, Any] = {
            "run_id": record.run_id,
            "pipeline": record.pipeline,
            "status": record.status,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "duration_s": record.duration_s,
            "predicted_s": predicted,
            "bound_s": bound,
            "concurrency": record.concurrency,
            "n_accounts": record.n_accounts,
            "host": record.host,
            "resumed_from": record.resumed_from,
            "tasks": sum(tasks.values()),
        }
        row.update({f"tasks_{s.value}": tasks.get(s.value, 0) for s in AttemptStatus})
        rows.append(row)
    return typed_frame(rows, RUN_COLUMNS)


PLAN_COLUMNS: tuple[Column, ...] = (
    Column("plan_id", "int64", "", "the stored plan's id"),
    Column("pipeline", "string", "", "pipeline name"),
    Column("run_id", "string", "", "the run it was made for (<NA>: planner plan --save)"),
    Column("created_at", TIME, "", "when it was made"),
    Column("predicted_s", "float64", "s", "the run's predicted duration"),
    Column("bound_s", "float64", "s", "the run's calibrated upper bound"),
    Column("concurrency", "Int64", "tasks", "the concurrency it chose"),
    Column("tasks", "Int64", "tasks", "tasks planned"),
    Column("interval_s", "float64", "s", "the interval to the next start it decided"),
    Column("next_start", TIME, "", "the next start it decided (NaT: none)"),
    Column("critical_path", "object", "", "the steps that set the predicted duration (list)"),
    Column("document", "object", "", "the whole plan, as planner plan --json prints it (dict)"),
)


@documented(PLAN_COLUMNS)
def plans(source: Source, pipeline: str) -> pd.DataFrame:
    """One row per plan stored for ``pipeline`` (every run stores the plan it follows;
    ``planner plan --save`` stores one without a run), oldest first."""
    with store_of(source) as store:
        records = store.plans(pipeline)
    rows = []
    for record in reversed(records):  # the store gives newest first
        doc = record.document
        rows.append(
            {
                "plan_id": record.plan_id,
                "pipeline": record.pipeline,
                "run_id": record.run_id,
                "created_at": record.created_at,
                "predicted_s": record.predicted_s,
                "bound_s": record.bound_s,
                "concurrency": doc.get("concurrency"),
                "tasks": len(doc.get("tasks", [])),
                "interval_s": doc.get("interval_s"),
                "next_start": doc.get("next_start"),
                "critical_path": list(doc.get("run", {}).get("critical_path", [])),
                "document": doc,
            }
        )
    return typed_frame(rows, PLAN_COLUMNS)


PLAN_TASK_COLUMNS: tuple[Column, ...] = (
    Column("plan_id", "int64", "", "the stored plan"),
    Column("run_id", "string", "", "the run it was made for"),
    Column("step", "string", "", "step id"),
    Column("account", "string", "", "account (<NA>: a step not per account)"),
    Column("predicted_s", "float64", "s", "the task's predicted duration"),
    Column("bound_s", "float64", "s", "the task's upper bound"),
    Column("estimate", "string", "", "where the prediction came from: model, a baseline, default"),
    Column("slot", "Int64", "", "the slot of the plan's schedule the task went to"),
)


@documented(PLAN_TASK_COLUMNS)
def plan_tasks(source: Source, pipeline: str, run_id: str | None = None) -> pd.DataFrame:
    """One row per task of the newest plan stored with each run of ``pipeline`` (with
    ``run_id``: of that run only), the runs oldest first. A task whose ``estimate`` is
    ``default`` had no history: its prediction is a placeholder."""
    with store_of(source) as store:
        records = store.plans(pipeline, run_id=run_id)
    newest: dict[str, Any] = {}
    for record in records:  # newest first: the first plan of a run wins
        if record.run_id is not None and record.run_id not in newest:
            newest[record.run_id] = record
    rows = [
        {
            "plan_id": record.plan_id,
            "run_id": record.run_id,
            "step": task.get("step"),
            "account": task.get("account"),
            "predicted_s": task.get("predicted_s"),
            "bound_s": task.get("bound_s"),
            "estimate": task.get("source"),
            "slot": task.get("slot"),
        }
        for record in reversed(newest.values())
        for task in record.document.get("tasks", [])
    ]
    return typed_frame(rows, PLAN_TASK_COLUMNS)


ALERT_COLUMNS: tuple[Column, ...] = (
    Column("alert_id", "int64", "", "the alert's id"),
    Column("pipeline", "string", "", "pipeline name"),
    Column("run_id", "string", "", "the run it is about (<NA>: none)"),
    Column("step", "string", "", "the step it is about (<NA>: the whole run)"),
    Column("account", "string", "", "the account it is about (<NA>: none)"),
    Column("level", "string", "", "info, warning or critical"),
    Column("kind", "string", "", "what fired: task_late, run_late, run_collision, ..."),
    Column("at", TIME, "", "when it fired"),
    Column("elapsed_s", "float64", "s", "how long the work had run then"),
    Column("predicted_s", "float64", "s", "its prediction"),
    Column("bound_s", "float64", "s", "its upper bound"),
    Column("eta", TIME, "", "when the work was expected to end (NaT: unknown)"),
    Column("text", "string", "", "the alert in words"),
    Column("sinks", "Int64", "", "sinks it was to be delivered to"),
    Column("delivered", "Int64", "", "sinks it was delivered to"),
)


@documented(ALERT_COLUMNS)
def alerts(source: Source, pipeline: str | None = None) -> pd.DataFrame:
    """One row per stored alert (of ``pipeline``), oldest first."""
    with store_of(source) as store:
        records = store.alerts(pipeline)
    rows = [
        {
            "alert_id": a.alert_id,
            "pipeline": a.pipeline,
            "run_id": a.run_id,
            "step": a.step,
            "account": a.account,
            "level": a.level,
            "kind": a.kind,
            "at": a.at,
            "elapsed_s": a.elapsed_s,
            "predicted_s": a.predicted_s,
            "bound_s": a.bound_s,
            "eta": a.eta,
            "text": a.text,
            "sinks": len(a.deliveries),
            "delivered": sum(1 for d in a.deliveries if d.status == "sent"),
        }
        for a in records
    ]
    return typed_frame(rows, ALERT_COLUMNS)


DECISION_COLUMNS: tuple[Column, ...] = (
    Column("id", "int64", "", "the decision's id"),
    Column("pipeline", "string", "", "pipeline name"),
    Column("at", TIME, "", "when the daemon decided"),
    Column("kind", "string", "", "scheduled, started, finished, deferred, refused, ..."),
    Column("run_id", "string", "", "the run it is about (deferred: the run holding the lease)"),
    Column("next_start", TIME, "", "the next start it set (NaT: none)"),
    Column("interval_s", "float64", "s", "the interval it chose"),
    Column("reason", "string", "", "why, in one line"),
    Column("detail", "object", "", "the figures it rests on (dict)"),
    Column("owner_id", "string", "", "the daemon that decided"),
    Column("host", "string", "", "its host"),
)


@documented(DECISION_COLUMNS)
def decisions(source: Source, pipeline: str | None = None) -> pd.DataFrame:
    """One row per decision the scheduler daemon stored (of ``pipeline``), oldest first."""
    with store_of(source) as store:
        records = store.decisions(pipeline)
    # the columns are the record's fields, in the same names
    newest_last = reversed(records)  # the store gives newest first
    rows = [{c.name: getattr(d, c.name) for c in DECISION_COLUMNS} for d in newest_last]
    return typed_frame(rows, DECISION_COLUMNS)
