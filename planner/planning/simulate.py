"""Replay recorded durations through schedule policies, as recurring series.

A series is the recorded sequence of durations of one recurring thing (whole runs, one
step, one account...). Each policy decides, when run ``k`` starts, the interval ``I_k``
until the next start, from the durations of runs ``1 .. k-1`` only (they have all finished:
the lock keeps one run at a time). Every policy keeps the cadence ``C`` as its minimum:

* ``fixed``: ``I = C``;
* ``avg10_x1.2``: ``I = max(C, 1.2 x mean of the last 10 durations)``;
* ``planner``: ``I = max(C, bound x (1 + min_margin))``, ``bound`` = the mean of the last 10
  durations times the adaptive conformal factor of the log residuals of the earlier runs
  (:class:`planner.learning.conformal.AdaptiveConformal`, target ``quantile``), at most 2 x
  the longest of the last 10;
* ``oracle``: ``I = max(C, d_k)``: it knows the duration, the limit of any policy.

Outcome of run ``k`` with duration ``d``: a start that comes due before it ends is a
*collision* (without the lock it would start a duplicate). ``fixed`` is a recurring trigger,
due at every ``s + m I`` (``m >= 1``, one for ``I = 0``) before the end; the other policies set
one next start per run. With the lock, the collisions of a run are coalesced into one
*deferral*: the next run starts when this one ends. So the next start is ``s + max(I, d)``,
the *idle* time is ``max(I, d) - d`` and the *lateness* against the cadence is
``max(0, max(I, d) - C)``.
With cadence ``0`` (back to back) the estimate alone decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BY_CHOICES",
    "POLICIES",
    "PolicyMetrics",
    "Series",
    "SimulationResult",
    "policy_intervals",
    "series_cadence",
    "series_from_frame",
    "simulate",
    "simulation_to_json",
]

POLICIES = ("fixed", "avg10_x1.2", "planner", "oracle")
BY_CHOICES: Mapping[str, tuple[str, ...]] = {
    "run": (),
    "step": ("step",),
    "account": ("account",),
    "step,account": ("step", "account"),
}
_WINDOW = 10
#: The planner bound never exceeds this many times the longest of the last 10 durations.
_CAP = 2.0
#: Relative slack when comparing a duration to an interval (log/exp round trips).
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Series:
    """One recurring series: the recorded starts (seconds) and durations, in start order."""

    name: str
    starts: np.ndarray
    durations: np.ndarray


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


def series_from_frame(frame: pd.DataFrame, by: str = "run") -> list[Series]:
    """The series of an attempts frame, grouped by ``by`` (see :data:`BY_CHOICES`).

    Within a series, one occurrence per run: from the first start of its attempts to the
    last end (start + duration). Occurrences without a duration are left out.
    """
    import pandas as pd

    if by not in BY_CHOICES:
        raise ValueError(f"by must be one of {', '.join(BY_CHOICES)}, got {by!r}")
    keys = list(BY_CHOICES[by])
    data = frame.loc[frame["duration_s"].notna(), [*keys, "run_id", "started_at", "duration_s"]]
    if data.empty:
        return []
    data = data.copy()
    origin = data["started_at"].min()
    data["start"] = (data["started_at"] - origin) / pd.Timedelta(seconds=1)
    data["end"] = data["start"] + data["duration_s"].astype("float64")
    for key in keys:
        data[key] = data[key].astype("string").fillna("-")
    grouped = (
        data.groupby([*keys, "run_id"], sort=False, dropna=False)
        .agg(start=("start", "min"), end=("end", "max"))
        .reset_index()
        .sort_values([*keys, "start"], kind="stable")
    )
    grouped["duration"] = grouped["end"] - grouped["start"]
    if not keys:
        return [
            Series(
                "run",
                grouped["start"].to_numpy(dtype="float64"),
                grouped["duration"].to_numpy(dtype="float64"),
            )
        ]
    out = []
    for name, part in grouped.groupby(keys, sort=True):
        label = ",".join(str(x) for x in (name if isinstance(name, tuple) else (name,)))
        out.append(
            Series(
                label,
                part["start"].to_numpy(dtype="float64"),
                part["duration"].to_numpy(dtype="float64"),
            )
        )
    return out


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
    quantile: float = 0.95,
    min_margin: float = 0.0,
    gamma: float = 0.005,
) -> np.ndarray:
    """The interval each policy sets at the start of each run (see the module docstring).

    ``I[k]`` depends only on ``durations[:k]`` (except for the oracle).
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
        bounds = _planner_bounds(d, quantile=quantile, gamma=gamma)
        return np.where(np.isnan(bounds), cadence, np.maximum(cadence, bounds * (1.0 + min_margin)))
    raise ValueError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")


def _planner_bounds(d: np.ndarray, *, quantile: float, gamma: float) -> np.ndarray:
    """Calibrated bounds from past runs only (NaN for the first run, which has none).

    ``bound = mean of the last 10 x exp(offset)`` (the same center as ``avg10_x1.2``: the
    calibrated factor replaces the flat 1.2), the offset being the adaptive conformal
    quantile of the earlier log residuals; capped at :data:`_CAP` x the longest of the last
    10 durations, so that one level shift or outlier does not inflate every later bound.
    """
    from planner.learning.conformal import AdaptiveConformal

    aci = AdaptiveConformal(quantile=quantile, gamma=gamma, window=2000).calibrate(())
    floor = 1e-3  # seconds: zero durations keep finite log residuals
    logs = np.log(np.maximum(d, floor))
    with np.errstate(invalid="ignore"):
        centers = np.log(np.maximum(_trailing_mean(d, _WINDOW), floor))
    caps = _CAP * _trailing_max(np.maximum(d, floor), _WINDOW)
    out = np.full(len(d), np.nan)
    for k in range(1, len(d)):
        center = float(centers[k])
        bound = min(math.exp(center + max(aci.offset(), 0.0)), float(caps[k]))
        out[k] = bound
        aci.update(float(logs[k]) - center, bool(d[k] > bound * (1 + _TOLERANCE)))
    return out


def _trailing_max(x: np.ndarray, window: int) -> np.ndarray:
    """Max of up to ``window`` values before each index (NaN at index 0)."""
    n = len(x)
    top = np.full(n, np.nan)
    if n > 1:
        top[1 : min(window, n)] = np.maximum.accumulate(x[: min(window, n) - 1])
    if n > window:
        views = np.lib.stride_tricks.sliding_window_view(x[:-1], window)
        top[window:] = views.max(axis=1)
    return top


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
    series: Iterable[Series],
    cadence: float | str,
    *,
    policies: Sequence[str] = POLICIES,
    quantile: float = 0.95,
    min_margin: float = 0.0,
) -> SimulationResult:
    """Every policy over every series; metrics summed (counts) or averaged (per run)."""
    totals = {p: [0, 0, 0] for p in policies}
    idle: dict[str, list[np.ndarray]] = {p: [] for p in policies}
    late: dict[str, list[np.ndarray]] = {p: [] for p in policies}
    count = 0
    for s in series:
        if len(s.durations) == 0:
            continue
        count += 1
        c = series_cadence(s, cadence)
        for p in policies:
            intervals = policy_intervals(
                s.durations, c, p, quantile=quantile, min_margin=min_margin
            )
            col, dfr, idl, lat = _outcomes(s.durations, intervals, c, recurring=p == "fixed")
            totals[p][0] += len(s.durations)
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
    return SimulationResult(count, str(cadence), metrics)


def simulation_to_json(result: SimulationResult) -> dict[str, Any]:
    """``{"series", "policies": {name: {runs, collisions, deferrals, idle_s_mean, ...}}}``."""
    return {
        "series": result.series,
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
