"""Features of task attempts, from the history only: pure, vectorized, no look-ahead.

For every attempt (a *target*) the history features describe the attempts of its groups
that had **finished before it started** (strictly): the last duration, the mean, median
and standard deviation of the last 2, 5 and 10, the geometric mean of the last 10, the
count, the time since the last one finished and a trend (log of the last-2 mean over the
last-10 mean). Groups, from the most specific to the broadest, are listed in
:data:`GROUP_LEVELS`.

How it stays vectorized and leak-free: for each group level the finished attempts are
sorted by (group, finish time) and the rolling statistics are computed *after* each
finish with shifted numpy arrays; each target then takes, with :func:`pandas.merge_asof`
(``allow_exact_matches=False``), the last finish event of its group strictly before its
start. :func:`snapshot` keeps the last event of every group so that the predictor can
build the same features for thousands of planned tasks with dictionary look-ups
(:func:`query_features`).

Times are turned into float seconds with datetime arithmetic, never ``astype("int64")``
(pandas 3 datetimes are not always in nanoseconds).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BASELINE_LEVELS",
    "GROUP_LEVELS",
    "STATS",
    "HistorySnapshot",
    "QueryTable",
    "attempt_features",
    "epoch_seconds",
    "finished_attempts",
    "history_features",
    "level_label",
    "params_key",
    "quantity_key",
    "query_features",
    "query_frame",
    "query_table",
    "snapshot",
    "to_seconds",
]

#: Group levels: name -> the columns of the group, most specific first.
GROUP_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sapq", ("step", "account", "quantity", "params")),
    ("sa", ("step", "account")),
    ("s", ("step",)),
    ("a", ("account",)),
    ("all", ()),
)
#: The fallback chain of the grouped baselines.
BASELINE_LEVELS: tuple[str, ...] = ("sapq", "sa", "s", "all")
#: Statistics per group level (column ``h.<level>.<stat>``).
STATS: tuple[str, ...] = (
    "last",
    "mean2",
    "mean5",
    "mean10",
    "median5",
    "median10",
    "std5",
    "std10",
    "gmean10",
    "trend",
    "count",
    "since",
)
_WINDOW = 10
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_EPOCH_DT = datetime(1970, 1, 1, tzinfo=UTC)
_QUERY_FIELDS = operator.attrgetter(
    "step", "account", "quantity", "params", "n_accounts", "concurrency"
)
_SEP = "\x1f"
_MAX_PARAM_FEATURES = 20
_NUMBERS = frozenset({int, float, np.float64, np.float32, np.int64, np.int32})


def level_label(level: str) -> str:
    """The human label of a group level: ``"step,account"``, ``"all"``..."""
    cols = dict(GROUP_LEVELS)[level]
    return ",".join(cols) if cols else "all"


def to_seconds(times: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Aware datetimes as float seconds since the epoch (NaT -> NaN), any resolution."""
    series = pd.Series(times)
    if series.dt.tz is None:
        series = series.dt.tz_localize("UTC")
    delta = series - _EPOCH
    return np.asarray(delta.dt.total_seconds(), dtype="float64")


def quantity_key(value: object) -> str:
    """The text of a quantity inside a group key (the same for frames and queries)."""
    if value is None or value is pd.NA:
        return "nan"
    number = float(value)  # type: ignore[arg-type]
    return "nan" if math.isnan(number) else repr(number)


def _scalar_text(value: object) -> str:
    if type(value) in _NUMBERS:
        return repr(float(value))  # type: ignore[arg-type]
    return repr(value)


def params_key(params: object) -> str:
    """Canonical text of a params mapping: sorted names, numbers as floats (7200 == 7200.0)."""
    if not isinstance(params, Mapping) or not params:
        return ""
    return "\x1e".join(f"{k}={_scalar_text(params[k])}" for k in sorted(params))


def _params_keys(params: Sequence[object]) -> list[str]:
    """``params_key`` of many mappings; the same object is only rendered once."""
    memo: dict[int, str] = {}
    out: list[str] = []
    for p in params:
        key = memo.get(id(p))
        if key is None:
            key = memo[id(p)] = params_key(p)
        out.append(key)
    return out


def _text(values: pd.Series) -> list[str]:
    return ["" if v is None or v is pd.NA else str(v) for v in values.tolist()]


def _level_keys(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The group key of every row for every level, as object arrays of strings."""
    step = np.array(_text(frame["step"]), dtype=object)
    account = np.array(_text(frame["account"]), dtype=object)
    quantity = np.array([quantity_key(q) for q in frame["quantity"].tolist()], dtype=object)
    params = np.array(_params_keys(frame["params"].tolist()), dtype=object)
    sa = step + _SEP + account
    return {
        "sapq": sa + _SEP + quantity + _SEP + params,
        "sa": sa,
        "s": step,
        "a": account,
        "all": np.full(len(frame), "", dtype=object),
    }


def finished_attempts(history: pd.DataFrame) -> pd.DataFrame:
    """The attempts that count as history: finished, with a duration > 0 (any status)."""
    mask = history["finished_at"].notna() & (history["duration_s"] > 0)
    return history.loc[mask.fillna(False).to_numpy(dtype=bool)]


def _rolling(codes: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics after each event; rows sorted by (code, time)."""
    n = len(values)
    window = np.full((n, _WINDOW), np.nan)
    for k in range(_WINDOW):
        if k == 0:
            window[:, 0] = values
            continue
        same = np.zeros(n, dtype=bool)
        same[k:] = codes[k:] == codes[:-k]
        window[k:, k] = np.where(same[k:], values[:-k], np.nan)
    counts: np.ndarray = np.ones(n)
    if n:
        starts = np.r_[True, codes[1:] != codes[:-1]]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        counts = np.arange(n) - group_start + 1.0
    logs = np.log(np.maximum(window, 1e-9))
    out = {
        "last": window[:, 0],
        "mean2": np.nanmean(window[:, :2], axis=1),
        "mean5": np.nanmean(window[:, :5], axis=1),
        "mean10": np.nanmean(window, axis=1),
        "median5": np.nanmedian(window[:, :5], axis=1),
        "median10": np.nanmedian(window, axis=1),
        "std5": np.nanstd(window[:, :5], axis=1),
        "std10": np.nanstd(window, axis=1),
        "gmean10": np.exp(np.nanmean(logs, axis=1)),
        "count": counts,
    }
    out["trend"] = np.log(np.maximum(out["mean2"], 1e-9)) - np.log(np.maximum(out["mean10"], 1e-9))
    return out


def _events(keys: np.ndarray, finished: np.ndarray, durations: np.ndarray) -> pd.DataFrame:
    """One row per finished attempt of a level: its key, finish time and stats after it."""
    codes, uniques = pd.factorize(keys)
    order = np.lexsort((finished, codes))
    codes = codes[order]
    stats = _rolling(codes, durations[order])
    events = pd.DataFrame(stats)
    events.insert(0, "key", np.asarray(uniques, dtype=object)[codes])
    events.insert(1, "t_finish", finished[order])
    return events


def history_features(targets: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """History features of each target from the attempts of ``history`` finished before it.

    ``targets`` needs ``step, account, quantity, params, started_at``; ``history`` is an
    attempts frame. The result has one row per target, in the targets' order and index.
    """
    done = finished_attempts(history)
    t_start = to_seconds(targets["started_at"])
    t_finish = to_seconds(done["finished_at"])
    durations = done["duration_s"].to_numpy(dtype="float64")
    target_keys = _level_keys(targets)
    done_keys = _level_keys(done)
    pos = np.arange(len(targets))
    columns: dict[str, np.ndarray] = {}
    for level, _cols in GROUP_LEVELS:
        events = _events(done_keys[level], t_finish, durations)
        left = pd.DataFrame({"key": target_keys[level], "t": t_start, "pos": pos})
        left = left.sort_values("t", kind="stable")
        right = events.sort_values("t_finish", kind="stable")
        merged = pd.merge_asof(
            left,
            right,
            left_on="t",
            right_on="t_finish",
            by="key",
            allow_exact_matches=False,
            direction="backward",
        ).sort_values("pos", kind="stable")
        for stat in STATS:
            if stat == "since":
                values = merged["t"].to_numpy() - merged["t_finish"].to_numpy(dtype="float64")
            elif stat == "count":
                values = merged["count"].fillna(0.0).to_numpy(dtype="float64")
            else:
                values = merged[stat].to_numpy(dtype="float64")
            columns[f"h.{level}.{stat}"] = values
    return pd.DataFrame(columns, index=targets.index)


def _running(starts: np.ndarray, finishes: np.ndarray, at: np.ndarray) -> np.ndarray:
    """How many history attempts had started and not finished at each time in ``at``."""
    s = np.sort(starts[~np.isnan(starts)])
    f = np.sort(np.where(np.isnan(finishes), np.inf, finishes)[~np.isnan(starts)])
    started = np.searchsorted(s, at, side="left")
    ended = np.searchsorted(f, at, side="right")
    return (started - ended).astype("float64")


def _param_columns(params: Sequence[object]) -> dict[str, np.ndarray]:
    """Numeric params as ``param.NAME`` columns (the most frequent names, at most 20).

    Each distinct mapping object is read once (planned tasks of a step share theirs)."""
    n = len(params)
    slot: dict[int, int] = {}
    distinct: list[object] = []
    index = np.empty(n, dtype=np.int64)
    for i, p in enumerate(params):
        j = slot.get(id(p))
        if j is None:
            j = slot[id(p)] = len(distinct)
            distinct.append(p)
        index[i] = j
    weight = np.bincount(index, minlength=len(distinct)) if n else np.zeros(0, dtype=np.int64)
    found: dict[str, dict[int, float]] = {}
    for j, p in enumerate(distinct):
        if isinstance(p, Mapping):
            for name, value in p.items():
                if type(value) in _NUMBERS:
                    found.setdefault(str(name), {})[j] = float(value)
    used = {name: int(weight[list(values)].sum()) for name, values in found.items()}
    names = sorted(found, key=lambda name: (-used[name], name))[:_MAX_PARAM_FEATURES]
    out: dict[str, np.ndarray] = {}
    for name in names:
        per_distinct = np.full(len(distinct), np.nan)
        values = found[name]
        per_distinct[list(values)] = list(values.values())
        out[f"param.{name}"] = per_distinct[index]
    return out


def _context(targets: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """What is known about a target itself at its start (no history statistics)."""
    started = pd.Series(targets["started_at"])
    t_start = to_seconds(started)
    cols: dict[str, np.ndarray] = {
        "quantity": pd.to_numeric(targets["quantity"], errors="coerce").to_numpy(dtype="float64"),
        "n_accounts": _float(targets, "n_accounts"),
        "concurrency": _float(targets, "concurrency"),
        "hour": started.dt.hour.to_numpy(dtype="float64"),
        "weekday": started.dt.day_of_week.to_numpy(dtype="float64"),
        "running": _running(
            to_seconds(history["started_at"]), to_seconds(history["finished_at"]), t_start
        ),
    }
    cols.update(_param_columns(targets["params"].tolist()))
    return pd.DataFrame(cols, index=targets.index)


def _float(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def attempt_features(frame: pd.DataFrame) -> pd.DataFrame:
    """All features of every attempt of an attempts frame, each from its own past only."""
    return pd.concat([_context(frame, frame), history_features(frame, frame)], axis=1)


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

    def running_at(self, at: float) -> float:
        """How many history attempts had started and not finished at ``at``."""
        known = ~np.isnan(self.starts)
        ended = np.where(np.isnan(self.finishes), np.inf, self.finishes)[known]
        return float(np.count_nonzero(self.starts[known] < at) - np.count_nonzero(ended <= at))


def snapshot(history: pd.DataFrame, now: datetime) -> HistorySnapshot:
    """The state of every group from the attempts finished strictly before ``now``."""
    at = float(to_seconds(pd.Series([pd.Timestamp(now)]))[0])
    done = finished_attempts(history)
    t_finish = to_seconds(done["finished_at"])
    keep = t_finish < at
    done = done.loc[keep]
    t_finish = t_finish[keep]
    durations = done["duration_s"].to_numpy(dtype="float64")
    keys = _level_keys(done)
    stats = [s for s in STATS if s != "since"]
    levels: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]] = {}
    for level, _cols in GROUP_LEVELS:
        events = _events(keys[level], t_finish, durations)
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
    )


def query_frame(tasks: Sequence[Any], now: datetime) -> pd.DataFrame:
    """Planned tasks (objects with the TaskQuery fields) as a frame of targets at ``now``."""
    stamp = pd.Timestamp(now if now.tzinfo else now.replace(tzinfo=UTC))
    return pd.DataFrame(
        {
            "step": pd.array([t.step for t in tasks], dtype="string"),
            "account": pd.array([t.account for t in tasks], dtype="string"),
            "quantity": np.array([float(t.quantity) for t in tasks], dtype="float64"),
            "params": [dict(t.params) for t in tasks],
            "n_accounts": np.array([float(t.n_accounts) for t in tasks], dtype="float64"),
            "concurrency": np.array([float(t.concurrency) for t in tasks], dtype="float64"),
            "started_at": pd.Series([stamp] * len(tasks), dtype="datetime64[us, UTC]"),
        }
    )


def epoch_seconds(moment: datetime) -> float:
    """One datetime as float seconds since the epoch (naive = UTC), as :func:`to_seconds`."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH_DT).total_seconds()


def _column_names(param_names: Sequence[str]) -> list[str]:
    context = ["quantity", "n_accounts", "concurrency", "hour", "weekday", "running"]
    params = [f"param.{name}" for name in param_names]
    return context + params + [f"h.{lv}.{s}" for lv, _ in GROUP_LEVELS for s in STATS]


def _weighted_param_columns(
    distinct: Sequence[object], weight: np.ndarray, index: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """:func:`_param_columns` of rows that use ``distinct[index[i]]``, each row counted
    ``weight`` times when choosing the names: (names, one column per name)."""
    found: dict[str, dict[int, float]] = {}
    for j, p in enumerate(distinct):
        if isinstance(p, Mapping):
            for name, value in p.items():
                if type(value) in _NUMBERS:
                    found.setdefault(str(name), {})[j] = float(value)
    per_distinct = np.bincount(index, weights=weight, minlength=len(distinct))
    used = {name: float(per_distinct[list(values)].sum()) for name, values in found.items()}
    names = sorted(found, key=lambda name: (-used[name], name))[:_MAX_PARAM_FEATURES]
    out = np.full((len(names), len(index)), np.nan)
    for row, name in enumerate(names):
        values = np.full(len(distinct), np.nan)
        values[list(found[name])] = list(found[name].values())
        out[row] = values[index]
    return names, out


@dataclass(frozen=True)
class QueryTable:
    """The features of the distinct planned tasks: ``frame.iloc[rows]`` is one row per task.

    ``steps`` and ``accounts`` are those of the distinct tasks (the frame's rows).
    """

    frame: pd.DataFrame
    rows: np.ndarray
    steps: list[str]
    accounts: list[str | None]


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
    sa = list(map(_SEP.join, zip(map(str, steps), account_text, strict=True)))
    objects = dict(zip(map(id, params), params, strict=True))  # tasks share a few mappings
    param_keys = {ident: params_key(obj) for ident, obj in objects.items()}
    qkeys = {q: quantity_key(q) for q in dict.fromkeys(quantities)}
    sapq = list(
        map(
            _SEP.join,
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
    p_names, p_values = _weighted_param_columns(
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
    out[6 : 6 + len(p_names)] = p_values
    col = 6 + len(p_names)
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
    return QueryTable(frame, rows, u_step, u_account)


def query_features(snap: HistorySnapshot, tasks: Sequence[Any], now: datetime) -> pd.DataFrame:
    """The features of planned tasks at ``now``, as :func:`attempt_features` makes them.

    ``snap`` must hold every attempt finished before ``now``: taken at ``now`` or at a
    time after the last finish of the history.
    """
    table = query_table(snap, tasks, now)
    return table.frame.iloc[table.rows].reset_index(drop=True)
