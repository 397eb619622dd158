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
start. :mod:`planner.learning.queries` builds the same features for planned tasks from a
snapshot of the last event of every group.

Times are turned into float seconds with datetime arithmetic, never ``astype("int64")``
(pandas 3 datetimes are not always in nanoseconds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from planner.learning.growth import GrowthFit, attempt_sizes

__all__ = [
    "BASELINE_LEVELS",
    "GROUP_LEVELS",
    "KEY_SEPARATOR",
    "MAX_PARAM_FEATURES",
    "NUMBER_TYPES",
    "STATS",
    "WORK_STATS",
    "attempt_features",
    "attempt_work",
    "finish_events",
    "finished_attempts",
    "history_features",
    "level_keys",
    "level_label",
    "param_columns",
    "params_key",
    "quantity_key",
    "to_seconds",
    "weighted_param_columns",
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
    "work2",
    "work10",
    "workmax",
    "since",
)
#: The statistics of the work of the attempts (see :mod:`planner.learning.growth`): the
#: baselines scale by them, the trees do not read them.
WORK_STATS: tuple[str, ...] = ("work2", "work10", "workmax")
_WINDOW = 10
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
KEY_SEPARATOR = "\x1f"
MAX_PARAM_FEATURES = 20
NUMBER_TYPES = frozenset({int, float, np.float64, np.float32, np.int64, np.int32})


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
    if type(value) in NUMBER_TYPES:
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


def level_keys(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The group key of every row for every level, as object arrays of strings."""
    step = np.array(_text(frame["step"]), dtype=object)
    account = np.array(_text(frame["account"]), dtype=object)
    quantity = np.array([quantity_key(q) for q in frame["quantity"].tolist()], dtype=object)
    params = np.array(_params_keys(frame["params"].tolist()), dtype=object)
    sa = step + KEY_SEPARATOR + account
    return {
        "sapq": sa + KEY_SEPARATOR + quantity + KEY_SEPARATOR + params,
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


def finish_events(
    keys: np.ndarray, finished: np.ndarray, durations: np.ndarray, work: np.ndarray
) -> pd.DataFrame:
    """One row per finished attempt of a level: its key, finish time and stats after it
    (of the durations, and of the attempts' ``work``: mean of the last 2 and 10, largest)."""
    codes, uniques = pd.factorize(keys)
    order = np.lexsort((finished, codes))
    codes = codes[order]
    stats = _rolling(codes, durations[order])
    w = work[order]
    sizes = _rolling(codes, w)
    stats["work2"], stats["work10"] = sizes["mean2"], sizes["mean10"]
    stats["workmax"] = (
        pd.Series(w).groupby(codes).cummax().to_numpy(dtype="float64") if len(w) else w
    )
    events = pd.DataFrame(stats)
    events.insert(0, "key", np.asarray(uniques, dtype=object)[codes])
    events.insert(1, "t_finish", finished[order])
    return events


def history_features(
    targets: pd.DataFrame, history: pd.DataFrame, growth: GrowthFit | None = None
) -> pd.DataFrame:
    """History features of each target from the attempts of ``history`` finished before it.

    ``targets`` needs ``step, account, quantity, params, started_at``; ``history`` is an
    attempts frame; ``growth`` gives each attempt's work (None: flat). The result has one
    row per target, in the targets' order and index.
    """
    done = finished_attempts(history)
    t_start = to_seconds(targets["started_at"])
    t_finish = to_seconds(done["finished_at"])
    durations = done["duration_s"].to_numpy(dtype="float64")
    work = attempt_work(done, growth or GrowthFit())
    target_keys = level_keys(targets)
    done_keys = level_keys(done)
    pos = np.arange(len(targets))
    columns: dict[str, np.ndarray] = {}
    for level, _cols in GROUP_LEVELS:
        events = finish_events(done_keys[level], t_finish, durations, work)
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


def param_columns(params: Sequence[object]) -> dict[str, np.ndarray]:
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
    names, values = weighted_param_columns(distinct, np.ones(n), index)
    return {f"param.{name}": column for name, column in zip(names, values, strict=True)}


def weighted_param_columns(
    distinct: Sequence[object], weight: np.ndarray, index: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """The numeric params of rows that use ``distinct[index[i]]``, row ``i`` counted
    ``weight[i]`` times when choosing the (at most 20) most used names:
    (names, one column of values per name)."""
    found: dict[str, dict[int, float]] = {}
    for j, p in enumerate(distinct):
        if isinstance(p, Mapping):
            for name, value in p.items():
                if type(value) in NUMBER_TYPES:
                    found.setdefault(str(name), {})[j] = float(value)
    per_distinct = np.bincount(index, weights=weight, minlength=len(distinct))
    used = {name: float(per_distinct[list(values)].sum()) for name, values in found.items()}
    names = sorted(found, key=lambda name: (-used[name], name))[:MAX_PARAM_FEATURES]
    out = np.full((len(names), len(index)), np.nan)
    for row, name in enumerate(names):
        values = np.full(len(distinct), np.nan)
        values[list(found[name])] = list(found[name].values())
        out[row] = values[index]
    return names, out


def attempt_work(frame: pd.DataFrame, growth: GrowthFit) -> np.ndarray:
    """The work of every attempt of a frame under ``growth`` (see planner.learning.growth)."""
    steps = frame["step"].astype("string").fillna("").to_numpy(dtype=object)
    return growth.work(steps, attempt_sizes(frame, growth.size_params))


def _context(targets: pd.DataFrame, history: pd.DataFrame, growth: GrowthFit) -> pd.DataFrame:
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
        "work": attempt_work(targets, growth),
    }
    cols.update(param_columns(targets["params"].tolist()))
    return pd.DataFrame(cols, index=targets.index)


def _float(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def attempt_features(frame: pd.DataFrame, growth: GrowthFit | None = None) -> pd.DataFrame:
    """All features of every attempt of an attempts frame, each from its own past only.

    ``growth``: how durations grow with size (:func:`~planner.learning.growth.fit_growth`
    of the attempts the caller may learn from: all of them to fit a model, the training
    part for an honest evaluation); None: flat, nothing scales."""
    if growth is None:
        growth = GrowthFit()
    return pd.concat(
        [_context(frame, frame, growth), history_features(frame, frame, growth)], axis=1
    )
