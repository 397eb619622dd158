"""How a task's duration grows with the size of its work: a fixed part and a rate.

The grouped baselines and the boosted trees only know durations at the sizes the history
has seen: asked about a quantity 4x the largest recorded, the baselines fall back to "the
same step and account at any quantity" and the trees repeat their value at the edge, so a
grown volume is predicted as short as before. This module fits, per step,

    duration = fixed + rate x size

where ``size`` is the task's quantity (1 when unset), times the number of accounts in the
run for a step that is not per account (its work covers every account), times the params
the pipeline file marks as sizes (a step's ``size: [pages]``): the product of its drivers.
Real tasks have a fixed part (process start-up, connections) and a part that grows; a
log-log slope alone under-predicts such work when it grows, so both are fitted: a
least-squares line through
the median duration at each distinct size (robust to outliers, weighted by the attempts
there, on each step's most recent attempts so that the fit follows drift), with the fixed
part and the rate kept >= 0.

A step's line is used only when the history *shows* growth: at least two distinct sizes,
a positive rate, and the line explaining at least half of the variance of those medians.
A step seen at one size only borrows the pipeline's *elasticity* (the median share of the
growing part at each fitted step's mean size): ``work(s) = (1 - e) + e x s / mean size``;
a step whose sizes vary without a relation, or a pipeline with no fitted step, stays flat
and nothing is scaled (said in :meth:`GrowthFit.describe`).

``work(step, size)`` is what the features carry (:mod:`planner.learning.features`): the
baselines scale a group's recent mean by ``work(task) / mean work of those attempts``, and
the model scales its trees' answer by ``work / largest work seen`` beyond the range the
history has seen. Pure: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "GrowthFit",
    "StepGrowth",
    "attempt_sizes",
    "fit_growth",
    "group_lines",
    "param_factor",
    "ratio",
    "sizes_of",
]

#: The most recent attempts of a step that its line is fitted on.
RECENT = 500
#: The share of the variance of the medians per size the line must explain.
MIN_R2 = 0.5
#: Ratios applied to a prediction are kept within these (a guard against a bad fit).
MAX_RATIO = 50.0


@dataclass(frozen=True)
class StepGrowth:
    """The line of one step: ``fixed + rate x size`` seconds, fitted on ``attempts``.

    ``source``: ``"step"`` (its own line), ``"pipeline"`` (the pipeline's elasticity at
    its mean size) or ``"flat"`` (no growth known). ``largest``: the largest size seen.
    """

    fixed: float
    rate: float
    attempts: int
    sizes: int
    largest: float
    mean_size: float
    source: str

    def fixed_share(self, size: float) -> float:
        """The share of the fixed part at ``size`` (1.0 for a flat step)."""
        total = self.fixed + self.rate * size
        return 1.0 if total <= 0 else self.fixed / total


@dataclass(frozen=True)
class GrowthFit:
    """The per-step lines of a pipeline's history (see the module docstring)."""

    steps: dict[str, StepGrowth] = field(default_factory=dict)
    elasticity: float | None = None
    #: step -> the params that measure its size (from the pipeline file)
    size_params: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def drivers(self, step: str, per_account: bool) -> str:
        """What a step's size is made of, in words: ``quantity``, ``quantity x pages``..."""
        parts = ["quantity", *([] if per_account else ["accounts"])]
        return " x ".join([*parts, *self.size_params.get(step, ())])

    def work(self, steps: np.ndarray | list[str], sizes: np.ndarray) -> np.ndarray:
        """The relative work of tasks of ``steps`` at ``sizes`` (1.0 where none is known)."""
        sizes = np.asarray(sizes, dtype="float64")
        steps_arr = np.asarray(steps, dtype=object)
        out = np.ones(len(sizes))
        if not self.steps:
            return out
        codes, uniques = pd.factorize(steps_arr)
        fixed = np.ones(len(uniques))
        rate = np.zeros(len(uniques))
        for i, step in enumerate(uniques.tolist()):
            line = self.steps.get(str(step))
            if line is not None and line.source != "flat":
                fixed[i], rate[i] = line.fixed, line.rate
        known = codes >= 0
        f, r = fixed[codes[known]], rate[codes[known]]
        work = f + r * sizes[known]
        # relative to the fixed part + 1 unit: a scale-free number, > 0
        out[known] = np.where(work > 0, work / np.maximum(f + r, 1e-12), 1.0)
        return out

    def describe(self, step: str) -> str:
        """How ``step``'s durations scale, in words (for plan notes)."""
        line = self.steps.get(step)
        if line is None or line.source == "flat":
            return "no growth with size measured"
        if line.source == "pipeline":
            return (
                f"the pipeline's rate ({self.elasticity:.0%} of a task's time grows with its size)"
            )
        return f"the rate fitted on {line.attempts} attempts"


def sizes_of(
    quantity: np.ndarray,
    n_accounts: np.ndarray,
    per_account: np.ndarray,
    factor: np.ndarray | None = None,
) -> np.ndarray:
    """The size of tasks: quantity (1 when unset or <= 0), x the accounts in the run for a
    task that is not per account, x ``factor`` (the product of its size params)."""
    q = np.asarray(quantity, dtype="float64")
    size = np.where(np.isfinite(q) & (q > 0), q, 1.0)
    n = np.asarray(n_accounts, dtype="float64")
    scale = np.where(np.isfinite(n) & (n > 0) & ~np.asarray(per_account, dtype=bool), n, 1.0)
    if factor is not None:
        scale = scale * factor
    return np.asarray(size * scale, dtype="float64")


def param_factor(
    steps: Sequence[object], params: Sequence[object], size_params: Mapping[str, Sequence[str]]
) -> np.ndarray | None:
    """The product of each task's size params (1 where a value is missing or not > 0);
    None when no step has any."""
    if not size_params:
        return None
    out = np.ones(len(steps))
    for i, (step, values) in enumerate(zip(steps, params, strict=True)):
        names = size_params.get(str(step))
        if not names or not isinstance(values, Mapping):
            continue
        for name in names:
            value = values.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                out[i] *= float(value)
    return out


def attempt_sizes(
    frame: pd.DataFrame, size_params: Mapping[str, Sequence[str]] | None = None
) -> np.ndarray:
    """The size of every attempt of an attempts frame (see :func:`sizes_of`)."""
    quantity = pd.to_numeric(frame["quantity"], errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )
    if "n_accounts" in frame:
        n_accounts = pd.to_numeric(frame["n_accounts"], errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
    else:
        n_accounts = np.full(len(frame), np.nan)
    account = frame["account"]
    per_account = (account.notna() & (account.astype("string").fillna("") != "")).to_numpy(
        dtype=bool
    )
    factor = (
        param_factor(frame["step"].tolist(), frame["params"].tolist(), size_params)
        if size_params
        else None
    )
    return sizes_of(quantity, n_accounts, per_account, factor)


def _line(sizes: np.ndarray, durations: np.ndarray) -> tuple[float, float, float, int] | None:
    """(fixed, rate, r2, distinct sizes) of the line through the medians per size."""
    table = pd.DataFrame({"s": sizes, "d": durations}).groupby("s")["d"].agg(["median", "size"])
    if len(table) < 2:
        return None
    s = table.index.to_numpy(dtype="float64")
    y = table["median"].to_numpy(dtype="float64")
    w = table["size"].to_numpy(dtype="float64")
    sw = w.sum()
    s_mean, y_mean = (w * s).sum() / sw, (w * y).sum() / sw
    var = (w * (s - s_mean) ** 2).sum()
    if var <= 0:
        return None
    rate = float((w * (s - s_mean) * (y - y_mean)).sum() / var)
    fixed = float(y_mean - rate * s_mean)
    if rate <= 0:
        return None
    if fixed < 0:  # no negative fixed part: the line through the origin
        fixed, rate = 0.0, float((w * s * y).sum() / (w * s * s).sum())
    total = (w * (y - y_mean) ** 2).sum()
    resid = (w * (y - fixed - rate * s) ** 2).sum()
    r2 = 1.0 - resid / total if total > 0 else 0.0
    return fixed, rate, float(r2), len(table)


def fit_growth(
    frame: pd.DataFrame, size_params: Mapping[str, Sequence[str]] | None = None
) -> GrowthFit:
    """The lines of every step of an attempts frame (finished attempts with a duration;
    when a ``status`` column says so, succeeded ones only: a failure stops early).
    ``size_params``: step -> the params that measure its size (a step's ``size``)."""
    marked = {str(k): tuple(v) for k, v in (size_params or {}).items() if v}
    if frame.empty:
        return GrowthFit(size_params=marked)
    mask = frame["finished_at"].notna() & (frame["duration_s"] > 0)
    if "status" in frame:
        mask &= frame["status"].isin(("succeeded", "unknown"))
    done = frame.loc[mask.fillna(False).to_numpy(dtype=bool)]
    if done.empty:
        return GrowthFit(size_params=marked)
    done = done.sort_values("finished_at", kind="stable")
    sizes = attempt_sizes(done, marked)
    durations = done["duration_s"].to_numpy(dtype="float64")
    steps = done["step"].astype("string").fillna("").to_numpy(dtype=object)
    lines: dict[str, StepGrowth] = {}
    shares: list[float] = []
    codes, uniques = pd.factorize(steps)
    for i, step in enumerate(uniques.tolist()):
        rows = np.flatnonzero(codes == i)[-RECENT:]
        s, d = sizes[rows], durations[rows]
        mean_size, largest = float(np.mean(s)), float(np.max(s))
        fit = _line(s, d)
        if fit is not None and fit[2] >= MIN_R2:
            fixed, rate, _r2, distinct = fit
            lines[str(step)] = StepGrowth(
                fixed, rate, len(rows), distinct, largest, mean_size, "step"
            )
            shares.append(rate * mean_size / (fixed + rate * mean_size))
        else:  # "flat"; with one size only, it may borrow the pipeline's elasticity below
            distinct = len(np.unique(s))
            lines[str(step)] = StepGrowth(1.0, 0.0, len(rows), distinct, largest, mean_size, "flat")
    elasticity = float(np.median(shares)) if shares else None
    if elasticity is not None:
        for step, line in lines.items():
            if line.source == "flat" and line.sizes <= 1:  # no spread: the pipeline's share
                mean = max(line.mean_size, 1e-12)
                lines[step] = StepGrowth(
                    1.0 - elasticity,
                    elasticity / mean,
                    line.attempts,
                    line.sizes,
                    line.largest,
                    line.mean_size,
                    "pipeline",
                )
    return GrowthFit(lines, elasticity, marked)


#: Attempts a (step, account) group needs for its own line to weigh as much as its step's.
GROUP_WEIGHT = 10


def group_lines(
    frame: pd.DataFrame, steps: Sequence[str], size_params: Mapping[str, Sequence[str]]
) -> dict[tuple[str, str], tuple[float, float, int]]:
    """``{(step, account): (fixed, rate, attempts)}`` of the groups of ``steps`` whose own
    history shows a line (the same test as a step's); accounts differ in how their work
    grows, and a group's own line, shrunk towards its step's, covers that."""
    if frame.empty or not steps:
        return {}
    done = frame.loc[
        (frame["finished_at"].notna() & (frame["duration_s"] > 0)).fillna(False).to_numpy(bool)
        & frame["step"].isin(list(steps)).to_numpy(bool)
        & frame["account"].notna().to_numpy(bool)
    ]
    if "status" in done:
        done = done.loc[done["status"].isin(("succeeded", "unknown")).to_numpy(bool)]
    if done.empty:
        return {}
    sizes = attempt_sizes(done, size_params)
    durations = done["duration_s"].to_numpy(dtype="float64")
    out: dict[tuple[str, str], tuple[float, float, int]] = {}
    keys = list(zip(done["step"].astype(str), done["account"].astype(str), strict=True))
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object))
    for i, key in enumerate(uniques.tolist()):
        rows = np.flatnonzero(codes == i)[-RECENT:]
        fit = _line(sizes[rows], durations[rows])
        if fit is not None and fit[2] >= MIN_R2:
            out[key] = (fit[0], fit[1], len(rows))
    return out


def ratio(work: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``work / reference``, 1.0 where either is unknown, within [1/MAX_RATIO, MAX_RATIO]."""
    work = np.asarray(work, dtype="float64")
    reference = np.asarray(reference, dtype="float64")
    ok = np.isfinite(work) & np.isfinite(reference) & (work > 0) & (reference > 0)
    out = np.ones(len(work))
    out[ok] = np.clip(work[ok] / reference[ok], 1.0 / MAX_RATIO, MAX_RATIO)
    return out
