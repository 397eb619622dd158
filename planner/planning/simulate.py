"""Replay recorded durations through schedule policies, as recurring series.

A series is the recorded sequence of durations of one recurring thing (whole runs, one
step, one account...). Each policy decides, when run ``k`` starts, the interval ``I_k``
until the next start. Every policy keeps the cadence ``C`` as its minimum:

* ``fixed``: ``I = C``;
* ``avg10_x1.2``: ``I = max(C, 1.2 x mean of the last 10 durations)``, from runs
  ``1 .. k-1`` of the series (the lock keeps one run at a time: they have all finished);
* ``planner``: ``I = max(C, bound x (1 + min_margin))``, ``bound`` = the calibrated bound
  planner's predictor would have issued at the run's recorded start (given to
  :func:`simulate`; :func:`planner.learning.online.causal_bounds` computes them from the
  :func:`occurrence_frame` of the series: the duration model fitted on the occurrences of
  every series finished before the simulated part, conformal bounds adapted online only
  with the occurrences finished before each start);
* ``oracle``: ``I = max(C, d_k)``: it knows the duration, the limit of any policy.

The history is split in time (:func:`split_time`): the first part trains planner's model
and warms up the rules; every policy is scored on the same runs, those starting at or
after the split.

Outcome of run ``k`` with duration ``d``: a start that comes due before it ends is a
*collision* (without the lock it would start a duplicate). ``fixed`` is a recurring trigger,
due at every ``s + m I`` (``m >= 1``, one for ``I = 0``) before the end; the other policies set
one next start per run. With the lock, the collisions of a run are coalesced into one
*deferral*: the next run starts when this one ends. So the next start is ``s + max(I, d)``,
the *idle* time is ``max(I, d) - d`` and the *lateness* against the cadence is
``max(0, max(I, d) - C)``.
With cadence ``0`` (back to back) the estimate alone decides.

Only what ran whole is replayed (:func:`planner.planning.replay.replay_series`, the runs
table's word on each run given as data: :class:`~planner.planning.replay.RunKind`): by
run, planner's full runs only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from planner.planning.replay import Replay

__all__ = [
    "BY_CHOICES",
    "POLICIES",
    "PolicyMetrics",
    "Series",
    "SimulationResult",
    "occurrence_frame",
    "policy_intervals",
    "series_cadence",
    "series_from_frame",
    "series_key",
    "simulate",
    "simulation_to_json",
    "split_bounds",
    "split_time",
]

POLICIES = ("fixed", "avg10_x1.2", "planner", "oracle")
BY_CHOICES: Mapping[str, tuple[str, ...]] = {
    "run": (),
    "step": ("step",),
    "account": ("account",),
    "step,account": ("step", "account"),
}
_WINDOW = 10
#: Relative slack when comparing a duration to an interval (log/exp round trips).
_TOLERANCE = 1e-9
_CONTEXT = ("step", "account", "quantity", "params")


#: Why a run (by run) or an occurrence (by step, account...) is not replayed, weakest first.
@dataclass(frozen=True, eq=False)
class Series:
    """One recurring series: the recorded starts (epoch seconds) and durations, in start
    order, and optionally what is known of each occurrence before it starts (``context``:
    a frame with ``step``, ``account``, ``quantity``, ``params``, one row per occurrence;
    without it the series' name is the step)."""

    name: str
    starts: np.ndarray
    durations: np.ndarray
    context: pd.DataFrame | None = None


@dataclass(frozen=True)
class PolicyMetrics:
    """What a policy did over every series."""

    runs: int
    collisions: int
    deferrals: int
    idle_s_mean: float
    lateness_s_mean: float

    @property
    def overrun_rate(self) -> float:
        """Share of runs still running when their next start came due."""
        return self.deferrals / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class SimulationResult:
    series: int
    cadence: str
    policies: Mapping[str, PolicyMetrics]
    simulated_from: float = -math.inf
    replay: Replay | None = None


def series_from_frame(frame: pd.DataFrame, by: str = "run") -> list[Series]:
    """The series of an attempts frame, grouped by ``by`` (see :data:`BY_CHOICES`).

    Within a series, one occurrence per run: from the first start of its attempts to the
    last end (start + duration). Occurrences without a duration are left out. The context
    of an occurrence is its step and account when it has one of each, and its quantity
    and params when it is a single attempt.
    """
    import pandas as pd

    if by not in BY_CHOICES:
        raise ValueError(f"by must be one of {', '.join(BY_CHOICES)}, got {by!r}")
    data = frame.loc[frame["duration_s"].notna(), [*_CONTEXT, "run_id", "started_at", "duration_s"]]
    if data.empty:
        return []
    data = data.copy()
    data["start"] = (
        data["started_at"] - pd.Timestamp(0, tz="UTC")
        if data["started_at"].dt.tz is not None
        else data["started_at"] - pd.Timestamp(0)
    ) / pd.Timedelta(seconds=1)
    data["end"] = data["start"] + data["duration_s"].astype("float64")
    for key in ("step", "account"):
        data[key] = data[key].astype("string")
    data["_key"] = series_key(data, by)
    grouped = (
        data.groupby(["_key", "run_id"], sort=False, dropna=False)
        .agg(
            start=("start", "min"),
            end=("end", "max"),
            attempts=("start", "size"),
            step=("step", "first"),
            steps=("step", "nunique"),
            account=("account", "first"),
            accounts=("account", "nunique"),
            quantity=("quantity", "first"),
            params=("params", "first"),
        )
        .reset_index()
        .sort_values(["_key", "start"], kind="stable")
    )
    grouped["duration"] = grouped["end"] - grouped["start"]
    single = grouped["attempts"].to_numpy() == 1
    grouped.loc[grouped["steps"].to_numpy() > 1, "step"] = pd.NA
    grouped.loc[grouped["accounts"].to_numpy() > 1, "account"] = pd.NA
    grouped.loc[~single, "quantity"] = np.nan
    grouped["params"] = [p if one else {} for p, one in zip(grouped["params"], single, strict=True)]
    out = []
    for group, part in grouped.groupby("_key", sort=True):
        label = str(group).strip("\x1f").replace("\x1f", ",") or "run"
        out.append(
            Series(
                label,
                part["start"].to_numpy(dtype="float64"),
                part["duration"].to_numpy(dtype="float64"),
                part[list(_CONTEXT)].reset_index(drop=True),
            )
        )
    return out


def series_key(data: pd.DataFrame, by: str) -> pd.Series:
    """The series each row belongs to: its ``by`` columns joined (``-`` for none)."""
    import pandas as pd

    key = pd.Series("", index=data.index, dtype="string")
    for column in BY_CHOICES[by]:
        key = key + "\x1f" + data[column].astype("string").fillna("-")
    return key


def split_time(series: Sequence[Series], train_fraction: float) -> float:
    """The start (epoch seconds) of the first simulated run: the occurrence at position
    ``ceil(n x train_fraction)`` of all ``n`` occurrences in start order (``-inf`` for 0)."""
    if not 0.0 <= train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in [0, 1), got {train_fraction!r}")
    starts = np.sort(np.concatenate([s.starts for s in series])) if series else np.empty(0)
    position = math.ceil(len(starts) * train_fraction)
    if train_fraction == 0.0 or len(starts) == 0:
        return -math.inf
    return float(starts[min(position, len(starts) - 1)])


def occurrence_frame(series: Sequence[Series]) -> pd.DataFrame:
    """Every occurrence of every series as an attempt row (the history contract's columns
    that the duration model reads), in the order of the series and their occurrences."""
    import pandas as pd

    parts = []
    for i, s in enumerate(series):
        n = len(s.durations)
        if s.context is not None:
            ctx = s.context.reset_index(drop=True)
        else:
            ctx = pd.DataFrame(
                {
                    "step": [s.name] * n,
                    "account": [None] * n,
                    "quantity": np.full(n, np.nan),
                    "params": [{} for _ in range(n)],
                }
            )
        micros = np.round(np.asarray(s.starts, dtype="float64") * 1e6).astype("int64")
        spans = np.round(np.asarray(s.durations, dtype="float64") * 1e6).astype("int64")
        parts.append(
            pd.DataFrame(
                {
                    "run_id": [f"{i}:{k}" for k in range(n)],
                    "step": ctx["step"].astype("string"),
                    "account": ctx["account"].astype("string"),
                    "quantity": pd.to_numeric(ctx["quantity"]).to_numpy(dtype="float64"),
                    "params": ctx["params"].to_list(),
                    "started_at": pd.to_datetime(micros, unit="us", utc=True),
                    "finished_at": pd.to_datetime(micros + spans, unit="us", utc=True),
                    "duration_s": np.asarray(s.durations, dtype="float64"),
                    "status": "unknown",
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            columns=["run_id", *_CONTEXT, "started_at", "finished_at", "duration_s", "status"]
        )
    return pd.concat(parts, ignore_index=True)


def split_bounds(series: Sequence[Series], bounds: np.ndarray) -> list[np.ndarray]:
    """Bounds over the :func:`occurrence_frame` rows, cut back into one array per series."""
    ends = np.cumsum([len(s.durations) for s in series])
    if len(bounds) != (ends[-1] if len(ends) else 0):
        raise ValueError(f"{len(bounds)} bounds for {ends[-1] if len(ends) else 0} occurrences")
    return np.split(np.asarray(bounds, dtype="float64"), ends[:-1])


def series_cadence(series: Series, cadence: float | str) -> float:
    """The cadence of a series: a number of seconds, or ``"auto"`` = median gap of starts."""
    if cadence == "auto":
        if len(series.starts) < 2:
            return 0.0
        return float(np.median(np.diff(np.sort(series.starts))))
    return float(cadence)


def _trailing_mean(durations: np.ndarray, window: int) -> np.ndarray:
    """Mean of up to ``window`` durations before each index (NaN at index 0)."""
    c = np.concatenate(([0.0], np.cumsum(durations)))
    idx = np.arange(len(durations))
    lo = np.maximum(idx - window, 0)
    count = idx - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (c[idx] - c[lo]) / np.maximum(count, 1), np.nan)


def policy_intervals(
    durations: Sequence[float] | np.ndarray,
    cadence: float,
    policy: str,
    *,
    bounds: Sequence[float] | np.ndarray | None = None,
    min_margin: float = 0.0,
) -> np.ndarray:
    """The interval each policy sets at the start of each run (see the module docstring).

    ``I[k]`` depends only on ``durations[:k]`` (the oracle: on ``durations[k]``; planner:
    on ``bounds[k]``, NaN meaning no estimate, so the cadence).
    """
    d = np.asarray(durations, dtype="float64")
    n = len(d)
    if policy == "fixed":
        return np.full(n, cadence)
    if policy == "oracle":
        out: np.ndarray = np.maximum(cadence, d)
        return out
    if policy == "avg10_x1.2":
        mean = _trailing_mean(d, _WINDOW)
        return np.where(np.isnan(mean), cadence, np.maximum(cadence, 1.2 * mean))
    if policy == "planner":
        if bounds is None:
            raise ValueError("the planner policy needs the bounds issued at each start")
        b = np.asarray(bounds, dtype="float64")
        if len(b) != n:
            raise ValueError(f"{len(b)} bounds for {n} runs")
        return np.where(np.isnan(b), cadence, np.maximum(cadence, b * (1.0 + min_margin)))
    raise ValueError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")


def _outcomes(
    d: np.ndarray, intervals: np.ndarray, cadence: float, *, recurring: bool
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Collisions, deferrals, idle times and lateness of one series under one policy."""
    late_start = d > intervals * (1 + _TOLERANCE)
    if recurring:  # a fixed trigger comes due every interval while the run goes on
        safe = np.where(intervals > 0, intervals, 1.0)
        due = np.where(intervals > 0, np.maximum(np.ceil(d / safe) - 1, 1), 1)
        collisions = int(np.where(late_start, due, 0).sum())
    else:  # the other policies set one next start per run
        collisions = int(np.count_nonzero(late_start))
    deferrals = int(np.count_nonzero(late_start))
    gap = np.maximum(intervals, d)[:-1]  # the last run has no next start in the trace
    idle = gap - d[:-1]
    lateness = np.maximum(0.0, gap - cadence)
    return collisions, deferrals, idle, lateness


def simulate(
    series: Sequence[Series],
    cadence: float | str,
    *,
    bounds: Sequence[np.ndarray] | None = None,
    simulated_from: float = -math.inf,
    policies: Sequence[str] = POLICIES,
    min_margin: float = 0.0,
) -> SimulationResult:
    """Every policy over every series; metrics summed (counts) or averaged (per run).

    ``bounds``: planner's bound at each run's start, one array per series (needed for the
    ``planner`` policy). Only the runs starting at or after ``simulated_from`` are scored
    (the earlier ones are the history the rules start from); series with none are left out.
    """
    if "planner" in policies and bounds is None:
        raise ValueError("the planner policy needs bounds (planner.learning.online)")
    totals = {p: [0, 0, 0] for p in policies}
    idle: dict[str, list[np.ndarray]] = {p: [] for p in policies}
    late: dict[str, list[np.ndarray]] = {p: [] for p in policies}
    count = 0
    for i, s in enumerate(series):
        first = int(np.searchsorted(s.starts, simulated_from, side="left"))
        d = np.asarray(s.durations, dtype="float64")
        if first >= len(d):
            continue
        count += 1
        c = series_cadence(s, cadence)
        for p in policies:
            intervals = policy_intervals(
                d,
                c,
                p,
                bounds=bounds[i] if bounds is not None and p == "planner" else None,
                min_margin=min_margin,
            )
            col, dfr, idl, lat = _outcomes(d[first:], intervals[first:], c, recurring=p == "fixed")
            totals[p][0] += len(d) - first
            totals[p][1] += col
            totals[p][2] += dfr
            idle[p].append(idl)
            late[p].append(lat)
    metrics = {}
    for p in policies:
        idl = np.concatenate(idle[p]) if idle[p] else np.empty(0)
        lat = np.concatenate(late[p]) if late[p] else np.empty(0)
        metrics[p] = PolicyMetrics(
            runs=totals[p][0],
            collisions=totals[p][1],
            deferrals=totals[p][2],
            idle_s_mean=float(idl.mean()) if len(idl) else 0.0,
            lateness_s_mean=float(lat.mean()) if len(lat) else 0.0,
        )
    return SimulationResult(count, str(cadence), metrics, simulated_from)


def simulation_to_json(result: SimulationResult) -> dict[str, Any]:
    """``{"series", "simulated_from", "policies": {name: {runs, collisions, deferrals,
    idle_s_mean, lateness_s_mean, overrun_rate}}}`` (``simulated_from``: ISO time or null),
    and ``"replayed": {"by", "unit": "runs"|"occurrences", "count", "left_out": {reason:
    n}}`` when the result says what was replayed."""
    from datetime import UTC, datetime

    start = result.simulated_from
    doc: dict[str, Any] = {
        "series": result.series,
        "simulated_from": (
            datetime.fromtimestamp(start, UTC).isoformat() if math.isfinite(start) else None
        ),
        "policies": {
            name: {
                "runs": m.runs,
                "collisions": m.collisions,
                "deferrals": m.deferrals,
                "idle_s_mean": round(m.idle_s_mean, 3),
                "lateness_s_mean": round(m.lateness_s_mean, 3),
                "overrun_rate": round(m.overrun_rate, 4),
            }
            for name, m in result.policies.items()
        },
    }
    if (r := result.replay) is not None:
        unit, left = ("runs" if r.by == "run" else "occurrences"), dict(r.left_out)
        doc["replayed"] = {"by": r.by, "unit": unit, "count": r.replayed, "left_out": left}
    return doc
