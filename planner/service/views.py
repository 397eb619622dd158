"""Views of the history that every front end shows: the runs list and one run.

The documents are the ones ``planner runs --json`` and ``planner show --json`` print
(times ISO 8601 with offset; seconds rounded to the millisecond)::

    {"runs": [{"run_id", "pipeline", "status", "started_at", "finished_at", "duration_s",
               "predicted_s", "bound_s", "concurrency", "tasks": {status: count},
               "partial", "selection", "resumed_from"}]}
    {"run": {...as above...}, "attempts": [{"step", "account", "attempt", "status",
     "started_at", "finished_at", "duration_s", "exit_code", "error_class", "peak_rss_mb",
     "cpu_s", "stderr_tail"}]}

``predicted_s`` and ``bound_s`` come from the plan stored with the run (``null`` for a run
without one); ``concurrency`` is the limit the run used; ``stderr_tail`` is the end of a
failed attempt's log (``null`` for the others). ``selection`` is the steps and accounts
the run chose, as stored (``null`` when none was stored); ``partial`` says it chose a subset
of them (:func:`run_kinds`); ``resumed_from`` is the run a ``--resume`` run resumed.

The runner stores the steps and accounts a run resolved to, not what was asked, so
"a subset" is judged against the runs around it: a run is partial in steps (accounts)
when an earlier run of its pipeline chose strictly more of them and a later run, or the
pipeline file when it is given (it stands for the next run), chooses strictly more again.
Growth (more accounts from some run on) and shrinkage (fewer from some run on) are not
partial. The newest run, with no file given, is partial when it chose fewer than the
latest earlier run that was not; so right after a shrinkage it reads partial until the
next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from planner.errors import UsageError
from planner.planning.replay import RunKind

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.history import AttemptRecord, HistoryStore, RunRecord

__all__ = [
    "attempt_document",
    "run_kinds",
    "run_note",
    "run_summary",
    "runs_document",
    "show_document",
]

_FAILED = frozenset({"failed", "timed_out", "interrupted"})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None else None


def run_kinds(records: Sequence[RunRecord], pipeline: Pipeline | None = None) -> dict[str, RunKind]:
    """Run id -> :class:`RunKind` of every run in ``records`` (any order, any pipelines):
    its status, the subset of steps and of accounts it chose (see the module docstring;
    ``pipeline``: the current file of one of them), the run it resumed."""
    by_pipeline: dict[str, list[RunRecord]] = {}
    for record in sorted(records, key=lambda r: (r.started_at, r.run_id)):
        by_pipeline.setdefault(record.pipeline, []).append(record)
    out: dict[str, RunKind] = {}
    for name, runs in by_pipeline.items():
        current = pipeline if pipeline is not None and pipeline.name == name else None
        chosen = {}
        for field in ("steps", "accounts"):
            now: frozenset[str] | None = None
            if current is not None:
                now = frozenset(
                    [s.id for s in current.steps if s.enabled]
                    if field == "steps"
                    else current.account_list
                )
            sets = [_chosen(r.selection, field) for r in runs]
            chosen[field] = _subsets(sets, now)
        for i, r in enumerate(runs):
            asked = r.selection.get("requested") if isinstance(r.selection, dict) else None
            if isinstance(asked, dict):  # recorded since the runner stores what was asked
                chosen["steps"][i] = asked.get("steps") is not None
                chosen["accounts"][i] = asked.get("accounts") is not None
            out[r.run_id] = RunKind(
                status=str(r.status),
                steps=_ordered(r.selection, "steps") if chosen["steps"][i] else None,
                accounts=_ordered(r.selection, "accounts") if chosen["accounts"][i] else None,
                resumed_from=r.resumed_from,
            )
    return out


def _chosen(selection: dict[str, Any], field: str) -> frozenset[str] | None:
    value = selection.get(field) if isinstance(selection, dict) else None
    return frozenset(str(v) for v in value) if isinstance(value, list) else None


def _ordered(selection: dict[str, Any], field: str) -> tuple[str, ...]:
    return tuple(str(v) for v in selection.get(field) or ())


def _subsets(sets: list[frozenset[str] | None], now: frozenset[str] | None) -> list[bool]:
    """Per run in start order: whether its set is a subset by the rule of the module."""
    span: dict[frozenset[str], tuple[int, int]] = {}
    for i, s in enumerate(sets):
        if s is not None:
            span[s] = (span[s][0] if s in span else i, i)
    newest = max((i for i, s in enumerate(sets) if s is not None), default=-1)
    flags = [False] * len(sets)
    reference: frozenset[str] | None = None  # the latest earlier run that was not partial
    for i, s in enumerate(sets):
        if s is None:
            continue
        more = [span[x] for x in span if s < x]
        if any(first < i for first, _ in more):  # an earlier run chose more
            if any(last > i for _, last in more) or (now is not None and s < now):
                flags[i] = True  # ... and a later one (or the file) again: a dip
            elif i == newest and now is None:
                flags[i] = reference is not None and s < reference  # nothing known after
        if not flags[i]:
            reference = s
    return flags


def run_note(kind: RunKind | None, *, limit: int = 4) -> str:
    """``resume of RUN_ID; partial: steps 1,2; accounts a`` ("" for a full run)."""

    def listed(values: tuple[str, ...]) -> str:
        more = f" +{len(values) - limit}" if len(values) > limit else ""
        return ",".join(values[:limit]) + more

    if kind is None:
        return ""
    notes = [f"resume of {kind.resumed_from}"] if kind.resumed_from else []
    subsets = [(name, v) for name, v in (("steps", kind.steps), ("accounts", kind.accounts)) if v]
    if subsets:
        notes.append("partial: " + "; ".join(f"{name} {listed(v)}" for name, v in subsets))
    return "; ".join(notes)


def run_summary(
    record: RunRecord,
    counts: dict[str, int],
    prediction: tuple[float, float] | None = None,
    kind: RunKind | None = None,
    *,
    note: bool = False,
) -> dict[str, Any]:
    """One run as in ``planner runs --json``; ``prediction``: its plan's (predicted, bound);
    ``kind``: from :func:`run_kinds` (``None``: not partial); ``note``: add
    :func:`run_note` as ``note``, for tables."""
    predicted, bound = prediction if prediction is not None else (None, None)
    row = {
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
        "partial": kind is not None and kind.partial,
        "selection": record.selection or None,
        "resumed_from": record.resumed_from,
    }
    if note:
        row["note"] = run_note(kind)
    return row


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


def show_document(
    store: HistoryStore,
    run_id: str,
    *,
    notes: bool = False,
    pipeline: Pipeline | None = None,
) -> dict[str, Any]:
    """The ``planner show --json`` document of ``run_id`` (``UsageError`` when unknown).

    ``notes`` adds the run's :func:`run_note` and each attempt's reason (retry, skip,
    stop) as ``note``, for the table; ``pipeline``: the run's pipeline file, if known.
    """
    record = store.get_run(run_id)
    if record is None:
        raise UsageError(run_id, f"no such run in {store.url}")
    from planner.history.records import task_counts

    records = store.attempts_for_run(run_id)
    prediction = store.run_predictions(run_ids=[run_id]).get(run_id)
    kind = run_kinds(store.list_runs(record.pipeline), pipeline).get(run_id)
    run = run_summary(record, task_counts(records), prediction, kind, note=notes)
    run["pauses"] = store.pauses_for_run(run_id)  # memory pressure (memory_pressure)
    run["limit_changes"] = limit_changes(store, record)
    return {"run": run, "attempts": [attempt_document(a, note=notes) for a in records]}


def limit_changes(store: HistoryStore, record: RunRecord) -> list[dict[str, Any]]:
    """The run's concurrency limit over time, ``{at, from, to, reason}`` oldest first; the
    first entry is the limit it started with (``from`` None, reason ``start``). A run
    recorded before limits were (schema 4 and older) had its concurrency throughout."""
    from planner.history.limits import START_REASON

    changes = store.limit_changes(record.run_id)
    if not changes and record.concurrency is not None:
        return [
            {"at": _iso(record.started_at), "from": None, "to": record.concurrency,
             "reason": START_REASON}
        ]  # fmt: skip
    return [
        {"at": _iso(c["at"]), "from": c["from"], "to": c["to"], "reason": c["reason"]}
        for c in changes
    ]


def runs_document(
    store: HistoryStore,
    pipeline: str | None = None,
    limit: int | None = None,
    *,
    notes: bool = False,
    definition: Pipeline | None = None,
) -> dict[str, Any]:
    """The ``planner runs --json`` document: runs newest first, with task counts.

    Every run of the pipeline(s) is read to tell partial runs (:func:`run_kinds`;
    ``definition``: the pipeline file, if known); ``notes`` adds each run's ``note``."""
    every = store.list_runs(pipeline)
    records = every[:limit] if limit is not None else every
    kinds = run_kinds(every, definition)
    ids = [r.run_id for r in records]
    counts = store.runs_task_counts(ids)
    predictions = store.run_predictions(run_ids=ids)
    return {
        "runs": [
            run_summary(
                r,
                counts.get(r.run_id, {}),
                predictions.get(r.run_id),
                kinds.get(r.run_id),
                note=notes,
            )
            for r in records
        ]
    }
