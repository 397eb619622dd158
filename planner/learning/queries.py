"""Features of planned tasks: the history features of :mod:`planner.learning.features`,
built for thousands of tasks at once from a snapshot of the last finish event of every
group (array look-ups, no per-task Python loop), so that a plan of 10,000 tasks is
predicted in milliseconds. The values equal what :func:`~planner.learning.features.
history_features` gives an attempt that starts at ``now``.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from planner.clock import ensure_utc
from planner.learning.features import (
    GROUP_LEVELS,
    KEY_SEPARATOR,
    STATS,
    attempt_work,
    finish_events,
    finished_attempts,
    level_keys,
    params_key,
    quantity_key,
    to_seconds,
    weighted_param_columns,
)
from planner.learning.growth import GrowthFit, param_factor, sizes_of

_EPOCH_DT = datetime(1970, 1, 1, tzinfo=UTC)
_QUERY_FIELDS = operator.attrgetter(
    "step", "account", "quantity", "params", "n_accounts", "concurrency"
)

__all__ = [
    "HistorySnapshot",
    "QueryTable",
    "epoch_seconds",
    "query_features",
    "query_table",
    "snapshot",
]


@dataclass(frozen=True)
class HistorySnapshot:
    """The last finish event of every group of every level, at ``at`` (seconds).

    ``last_finish`` is the latest finish among them: the snapshot is valid for any
    ``now`` after it (only the time since the last finish and the running count change).
    """

    at: float
    levels: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]]
    last_finish: float
    starts: np.ndarray
    finishes: np.ndarray
    growth: GrowthFit

    def running_at(self, at: float) -> float:
        """How many history attempts had started and not finished at ``at``."""
        known = ~np.isnan(self.starts)
        ended = np.where(np.isnan(self.finishes), np.inf, self.finishes)[known]
        return float(np.count_nonzero(self.starts[known] < at) - np.count_nonzero(ended <= at))


def snapshot(
    history: pd.DataFrame, now: datetime, growth: GrowthFit | None = None
) -> HistorySnapshot:
    """The state of every group from the attempts finished strictly before ``now``;
    ``growth`` gives the attempts' and the tasks' work (None: flat, nothing scales)."""
    if growth is None:
        growth = GrowthFit()
    at = float(to_seconds(pd.Series([pd.Timestamp(now)]))[0])
    done = finished_attempts(history)
    t_finish = to_seconds(done["finished_at"])
    keep = t_finish < at
    done = done.loc[keep]
    t_finish = t_finish[keep]
    durations = done["duration_s"].to_numpy(dtype="float64")
    work = attempt_work(done, growth)
    keys = level_keys(done)
    stats = [s for s in STATS if s != "since"]
    levels: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]] = {}
    for level, _cols in GROUP_LEVELS:
        events = finish_events(keys[level], t_finish, durations, work)
        last = events.drop_duplicates("key", keep="last")
        index = {str(k): i for i, k in enumerate(last["key"].tolist())}
        levels[level] = (
            index,
            last[stats].to_numpy(dtype="float64"),
            last["t_finish"].to_numpy(dtype="float64"),
        )
    return HistorySnapshot(
        at=at,
        levels=levels,
        last_finish=float(t_finish.max()) if len(t_finish) else float("-inf"),
        starts=to_seconds(history["started_at"]),
        finishes=to_seconds(history["finished_at"]),
        growth=growth,
    )


def epoch_seconds(moment: datetime) -> float:
    """One datetime as float seconds since the epoch (naive = UTC), as :func:`to_seconds`."""
    return (ensure_utc(moment) - _EPOCH_DT).total_seconds()


def _column_names(param_names: Sequence[str]) -> list[str]:
    context = ["quantity", "n_accounts", "concurrency", "hour", "weekday", "running", "work"]
    params = [f"param.{name}" for name in param_names]
    return context + params + [f"h.{lv}.{s}" for lv, _ in GROUP_LEVELS for s in STATS]


@dataclass(frozen=True)
class QueryTable:
    """The features of the distinct planned tasks: ``frame.iloc[rows]`` is one row per task.

    ``steps``, ``accounts`` and ``params`` are those of the distinct tasks (the frame's
    rows).
    """

    frame: pd.DataFrame
    rows: np.ndarray
    steps: list[str]
    accounts: list[str | None]
    params: list[object]


def query_table(snap: HistorySnapshot, tasks: Sequence[Any], now: datetime) -> QueryTable:
    """The features of the *distinct* planned tasks at ``now`` and, per task, its row.

    Tasks with the same step, account, quantity, params (by content), number of accounts
    and concurrency have the same features: they are built once. ``frame.iloc[rows]``
    equals :func:`query_features` (values and column order). Built with array operations
    and C-level ``map``/``zip`` over the tasks (no per-task Python statement): planning
    asks for 10,000 tasks at a time. ``snap`` as for :func:`query_features`.
    """
    n = len(tasks)
    at = epoch_seconds(now)
    steps, accounts, quantities, params, n_accounts, concurrency = (
        zip(*map(_QUERY_FIELDS, tasks), strict=True) if n else ((),) * 6
    )
    account_text = ["" if a is None else str(a) for a in accounts]
    sa = list(map(KEY_SEPARATOR.join, zip(map(str, steps), account_text, strict=True)))
    objects = dict(zip(map(id, params), params, strict=True))  # tasks share a few mappings
    param_keys = {ident: params_key(obj) for ident, obj in objects.items()}
    qkeys = {q: quantity_key(q) for q in dict.fromkeys(quantities)}
    sapq = list(
        map(
            KEY_SEPARATOR.join,
            zip(
                sa,
                map(qkeys.__getitem__, quantities),
                map(param_keys.__getitem__, map(id, params)),
                strict=True,
            ),
        )
    )
    # the distinct tasks: the same sapq group, number of accounts and concurrency
    keep: list[int] | None = None
    rows = np.arange(n, dtype=np.int64)
    if len(set(sapq)) < n:
        signatures = list(zip(sapq, n_accounts, concurrency, strict=True))
        first = dict(zip(reversed(signatures), range(n - 1, -1, -1), strict=True))
        keep = sorted(first.values())
        row_of = dict(zip(map(signatures.__getitem__, keep), itertools.count()))
        rows = np.fromiter(map(row_of.__getitem__, signatures), np.int64, count=n)

    def distinct(values: Sequence[Any]) -> list[Any]:
        return list(values) if keep is None else list(map(values.__getitem__, keep))

    u = n if keep is None else len(keep)
    u_step, u_account = distinct(steps), distinct(accounts)
    keys: dict[str, list[str]] = {
        "sapq": distinct(sapq),
        "sa": distinct(sa),
        "s": u_step,
        "a": distinct(account_text),
    }
    # numeric params: one slot per distinct content, names chosen by the tasks using them
    slot_of_key: dict[str, int] = {}
    slot_of_id: dict[int, int] = {}
    mappings: list[object] = []
    for ident, obj in objects.items():
        slot = slot_of_key.setdefault(param_keys[ident], len(mappings))
        if slot == len(mappings):
            mappings.append(obj)
        slot_of_id[ident] = slot
    task_slot = np.fromiter(map(slot_of_id.__getitem__, map(id, params)), np.int64, count=n)
    p_names, p_values = weighted_param_columns(
        mappings,
        np.bincount(rows, minlength=u).astype("float64"),
        task_slot if keep is None else task_slot[keep],
    )
    names = _column_names(p_names)
    out = np.empty((len(names), u))  # one row per column: the frame's transposed block
    stamp = datetime.fromtimestamp(at, UTC)
    out[0] = np.asarray(distinct(quantities), dtype="float64")
    out[1] = np.asarray(distinct(n_accounts), dtype="float64")
    out[2] = np.asarray(distinct(concurrency), dtype="float64")
    out[3] = float(stamp.hour)
    out[4] = float(stamp.weekday())
    out[5] = snap.running_at(at)
    per_account = np.fromiter((a is not None and a != "" for a in u_account), bool, count=u)
    growth = snap.growth
    factor = param_factor(u_step, distinct(params), growth.size_params)
    out[6] = growth.work(u_step, sizes_of(out[0], out[1], per_account, factor))
    out[7 : 7 + len(p_names)] = p_values
    col = 7 + len(p_names)
    n_stats = len(STATS) - 1  # every stat but "since" (the last) is in the table
    count_at = STATS.index("count")
    for level, _cols in GROUP_LEVELS:
        index, table, finish = snap.levels[level]
        if level == "all":  # one group: the same row for every task
            found_row = np.full(u, index.get("", -1), dtype=np.int64)
        elif level in ("s", "a"):  # few groups: look each up once
            lookup = {k: index.get(k, -1) for k in dict.fromkeys(keys[level])}
            found_row = np.fromiter(map(lookup.__getitem__, keys[level]), np.int64, count=u)
        else:
            found_row = np.fromiter(
                map(index.get, keys[level], itertools.repeat(-1)), np.int64, count=u
            )
        found = found_row >= 0
        block = out[col : col + n_stats + 1]
        if len(table):
            safe = np.where(found, found_row, 0)
            block[:n_stats] = table[safe].T
            block[:n_stats, ~found] = np.nan
            block[n_stats] = np.where(found, at - finish[safe], np.nan)
        else:
            block[:] = np.nan
        count = block[count_at]
        count[np.isnan(count)] = 0.0
        col += n_stats + 1
    frame = pd.DataFrame(out.T, columns=names, copy=False)
    return QueryTable(frame, rows, u_step, u_account, distinct(params))


def query_features(snap: HistorySnapshot, tasks: Sequence[Any], now: datetime) -> pd.DataFrame:
    """The features of planned tasks at ``now``, as :func:`attempt_features` makes them.

    ``snap`` must hold every attempt finished before ``now``: taken at ``now`` or at a
    time after the last finish of the history.
    """
    table = query_table(snap, tasks, now)
    return table.frame.iloc[table.rows].reset_index(drop=True)
