"""Fit, per step, how task durations grow with the concurrency they ran at (the USL).

Every attempt records the concurrency in effect (the run's limit). Per step, on its last
:data:`RECENT` succeeded attempts with a concurrency:

1. each duration is divided by its work (:mod:`planner.learning.growth`: quantity,
   accounts, size params), so tasks of different sizes compare, and taken on a log scale;
2. the log durations are split into a *group* effect (the account and params: a big
   account is slow at any concurrency) and a *level* effect (the concurrency) by a median
   polish of the (group, level) medians: robust to odd attempts, and right when the
   levels saw different accounts. Only groups seen at two levels or more tell anything
   about the levels, so only they count;
3. the level effects ``r(n) = exp(level effect)`` are fitted as ``c x s(n)`` with ``s`` the
   USL stretch ``1 + sigma (n - 1) + kappa n (n - 1)``: linear in ``(c, c sigma, c kappa)``,
   solved by weighted least squares (weights: attempts per level) with the three >= 0
   (every subset of the two shape terms is tried; the feasible one of least error wins).

Evidence rule: a level counts when :data:`MIN_ATTEMPTS` attempts of groups seen at two
levels or more ran at it. Three counting levels fit ``sigma`` and ``kappa``; two fit
``sigma`` alone (two points cannot tell contention from coherency); fewer: no curve, and
the plan says so and keeps the CPU rule. A curve is kept when it explains at least
:data:`MIN_R2` of the variance of the level effects, or when they hardly vary (under
:data:`FLAT` apart: a step that does not slow down, ``sigma = kappa = 0``).

Why the USL rather than the duration model's own ``concurrency`` feature: the boosted
trees cannot extrapolate (asked at 16 after seeing 1 to 8 they answer as at 8), the
baselines ignore concurrency, and the plan needs a curve it can evaluate at any count and
whose peak it can name. The model keeps the feature; the plan asks it at the concurrency
the step's latest runs had (``reference``) and stretches from there; a baseline's last-k
mean is stretched from the mean stretch of the k runs it averages (``recent``). The
slowdown is so counted once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from planner.learning.features import params_key
from planner.learning.growth import GrowthFit, attempt_sizes, fit_growth
from planner.planning.contention import USL, StepContention

__all__ = [
    "FLAT",
    "MIN_ATTEMPTS",
    "MIN_R2",
    "RECENT",
    "RECENT_RUNS",
    "fit_contention",
    "fit_usl",
    "level_effects",
]

#: The most recent attempts of a step the curve is fitted on.
RECENT = 2000
#: The attempts a concurrency level needs to count.
MIN_ATTEMPTS = 5
#: The share of the variance of the level effects a curve must explain.
MIN_R2 = 0.5
#: Level effects whose largest / smallest is under 1 + FLAT: the step does not slow down.
FLAT = 0.05
#: How many of a step's latest runs :attr:`StepContention.recent` keeps.
RECENT_RUNS = 10
#: Median polish rounds.
_ROUNDS = 10


def fit_usl(
    levels: Sequence[float] | np.ndarray,
    stretch: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
) -> tuple[USL, float, float | None]:
    """``(usl, c, r2)``: the USL whose ``c x s(n)`` fits ``stretch`` at ``levels`` best
    (weighted least squares, ``c > 0``, ``sigma, kappa >= 0``; with two levels ``kappa = 0``).
    ``r2``: the weighted share of variance explained (``None``: the stretches do not vary)."""
    n = np.asarray(levels, dtype="float64")
    y = np.asarray(stretch, dtype="float64")
    w = np.ones(len(n)) if weights is None else np.asarray(weights, dtype="float64")
    if len(n) < 2 or len(np.unique(n)) < 2:
        raise ValueError("a USL fit needs two distinct levels or more")
    columns = np.stack([np.ones(len(n)), n - 1.0, n * (n - 1.0)], axis=1)
    shapes = [(1,), (2,), (1, 2), ()] if len(np.unique(n)) >= 3 else [(1,), ()]
    root = np.sqrt(w)
    best: tuple[float, np.ndarray] | None = None
    for shape in shapes:
        used = [0, *shape]
        coef, *_ = np.linalg.lstsq(columns[:, used] * root[:, None], y * root, rcond=None)
        if coef[0] <= 0 or any(c < 0 for c in coef[1:]):
            continue
        full = np.zeros(3)
        full[used] = coef
        error = float((w * (y - columns @ full) ** 2).sum())
        if best is None or error < best[0] - 1e-12:
            best = (error, full)
    if best is None:  # nothing feasible: no slowdown, the weighted mean level
        full = np.array([float((w * y).sum() / w.sum()), 0.0, 0.0])
        best = (float((w * (y - full[0]) ** 2).sum()), full)
    error, (c, a1, a2) = best
    mean = (w * y).sum() / w.sum()
    total = float((w * (y - mean) ** 2).sum())
    r2 = None if total <= 1e-12 * max(1.0, mean**2) else 1.0 - error / total
    return USL(float(a1 / c), float(a2 / c)), float(c), r2


def level_effects(
    groups: np.ndarray, levels: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(levels, effect, attempts)``: the level effect of ``values`` (log durations) by a
    median polish of the (group, level) cell medians, over the groups seen at two levels
    or more; ``attempts``: how many of their attempts ran at each level."""
    cells = (
        pd.DataFrame({"g": groups, "n": levels, "y": values})
        .groupby(["g", "n"], sort=True)["y"]
        .agg(["median", "size"])
        .reset_index()
    )
    spans = cells.groupby("g")["n"].transform("size").to_numpy()
    cells = cells.loc[spans >= 2]
    if cells.empty:
        return np.array([], dtype="int64"), np.array([]), np.array([], dtype="int64")
    g_codes, _ = pd.factorize(cells["g"])
    n_codes, n_uniques = pd.factorize(cells["n"], sort=True)
    size = cells["size"].to_numpy(dtype="int64")
    # a dense (group x level) table of cell medians, NaN where a group did not run
    table = np.full((g_codes.max() + 1, len(n_uniques)), np.nan)
    table[g_codes, n_codes] = cells["median"].to_numpy(dtype="float64")
    col = np.zeros(len(n_uniques))
    for _ in range(_ROUNDS):
        row = np.nanmedian(table - col[None, :], axis=1)
        col = np.nanmedian(table - row[:, None], axis=0)
    attempts = np.bincount(n_codes, weights=size, minlength=len(n_uniques)).astype("int64")
    return np.asarray(n_uniques, dtype="int64"), col - col.min(), attempts


def _recent(rows: pd.DataFrame) -> tuple[int, tuple[int, ...]]:
    """The median concurrency of the step's attempts in its last two runs, and the
    concurrency of each of its last :data:`RECENT_RUNS` runs (oldest first)."""
    per_run = rows.groupby("run_id", sort=False)["concurrency"].median()
    last = rows["run_id"].drop_duplicates().tail(2)
    latest = rows.loc[rows["run_id"].isin(last), "concurrency"]
    recent = per_run.loc[rows["run_id"].drop_duplicates().tail(RECENT_RUNS)]
    return max(1, round(float(latest.median()))), tuple(max(1, round(float(x))) for x in recent)


def fit_contention(
    frame: pd.DataFrame,
    *,
    growth: GrowthFit | None = None,
    size_params: Mapping[str, Sequence[str]] | None = None,
    recent: int = RECENT,
) -> dict[str, StepContention]:
    """Per step of an attempts frame (the history contract) with any succeeded attempt
    that recorded its concurrency: its curve and evidence (see the module docstring).
    ``growth``: the work normalisation (default: fitted on ``frame``)."""
    if frame.empty or "concurrency" not in frame:
        return {}
    concurrency = pd.to_numeric(frame["concurrency"], errors="coerce")
    duration = pd.to_numeric(frame["duration_s"], errors="coerce")
    mask = concurrency.ge(1) & duration.gt(0) & frame["finished_at"].notna()
    if "status" in frame:
        mask &= frame["status"].astype("string").isin(("succeeded", "unknown"))
    done = frame.loc[mask.fillna(False).to_numpy(dtype=bool)]
    if done.empty:
        return {}
    done = done.sort_values("started_at", kind="stable")
    done = done.groupby(done["step"].astype("string").fillna(""), sort=False).tail(recent)
    if growth is None:
        growth = fit_growth(frame, size_params)
    steps = done["step"].astype("string").fillna("").to_numpy(dtype=object)
    work = growth.work(steps, attempt_sizes(done, growth.size_params))
    log_d = np.log(done["duration_s"].to_numpy(dtype="float64")) - np.log(work)
    accounts = done["account"].astype("string").fillna("").to_numpy(dtype=object)
    memo: dict[int, str] = {}  # the same params object is rendered once
    params = np.array(
        [memo.get(id(p)) or memo.setdefault(id(p), params_key(p)) for p in done["params"]],
        dtype=object,
    )
    groups = accounts + "\x1f" + params
    level = pd.to_numeric(done["concurrency"]).to_numpy(dtype="int64")
    out: dict[str, StepContention] = {}
    codes, uniques = pd.factorize(steps)
    for i, step in enumerate(uniques.tolist()):
        rows = np.flatnonzero(codes == i)
        seen, per_level = np.unique(level[rows], return_counts=True)
        name = str(step)
        reference, latest_runs = _recent(done.iloc[rows])
        base = StepContention(
            name,
            tuple(int(x) for x in seen),
            tuple(int(x) for x in per_level),
            reference=reference,
            recent=latest_runs,
        )
        out[name] = _fit_step(base, groups[rows], level[rows], log_d[rows])
    return out


def _fit_step(
    base: StepContention, groups: np.ndarray, levels: np.ndarray, values: np.ndarray
) -> StepContention:
    if len(base.levels) < 2:
        return base
    at, effect, attempts = level_effects(groups, levels, values)
    counted = attempts >= MIN_ATTEMPTS
    if counted.sum() < 2:
        return _without(
            base,
            "no account ran at two of them"
            if len(at) < 2
            else f"fewer than 2 levels with {MIN_ATTEMPTS} comparable attempts",
        )
    at, effect, attempts = at[counted], effect[counted], attempts[counted]
    stretch = np.exp(effect)
    usl, c, r2 = fit_usl(at, stretch, attempts)
    flat = stretch.max() / stretch.min() < 1.0 + FLAT
    if flat:  # a step that does not slow down
        usl, c = USL(0.0, 0.0), float(np.average(stretch, weights=attempts))
    elif r2 is not None and r2 < MIN_R2:
        return _without(
            base, f"its durations vary with concurrency without a clear curve (R² {r2:.2f})"
        )
    return StepContention(
        base.step,
        tuple(int(x) for x in at),
        tuple(int(x) for x in attempts),
        usl=usl,
        r2=r2,
        observed=tuple(float(x) for x in stretch / c),
        reference=base.reference,
        recent=base.recent,
    )


def _without(base: StepContention, reason: str) -> StepContention:
    return StepContention(
        base.step,
        base.levels,
        base.attempts,
        reference=base.reference,
        reason=reason,
        recent=base.recent,
    )
