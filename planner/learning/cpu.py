"""CPU use per task: how many cores a step's tasks keep busy, from their history.

An attempt's CPU share is ``cpu_s / duration_s``: the CPU seconds of its whole process
tree per wall second. A task that waits on a remote service reads about 0.05, one that
computes on one core about 1.0, one that runs four threads about 4. Planning divides the
spare cores by it to size ``auto`` concurrency
(:func:`planner.planning.concurrency.choose_concurrency`).

:func:`cpu_share_by_step` takes, per step, the :data:`QUANTILE` quantile of the shares of
its last :data:`LAST` usable attempts:

- per step, not per (step, account): the run has one limit, the CPU profile belongs to
  the step's command more than to an account, and a step of 8 accounts has 8 shares
  after one run;
- a high quantile, as for peak memory: an underestimate oversubscribes the CPU, and then
  every task of the run slows down, overruns its prediction and may reach its timeout,
  while an overestimate only leaves some parallelism unused. The 0.9 quantile follows the
  busier tasks of a step (one account in ten that computes more) but not a single odd
  attempt (a cold cache) among twenty, which the maximum would;
- the last 20: a step whose command changed shows its new profile within a few runs.

Usable attempts: finished (``succeeded``, ``failed``, ``timed_out``), at least
:data:`MIN_TASK_S` long (a shorter task's share is mostly the noise of its start), with
a measured ``cpu_s``; succeeded attempts only when the step has any (a task that fails
fast on a network error does not use the CPU as its work does). Shares are clamped to
``[MIN_SHARE, cores]`` (``cores``: the largest ``cpu_count`` recorded with them, when
known). A step without usable attempts has no share: planning then counts one core per
task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["LAST", "MIN_SHARE", "MIN_TASK_S", "QUANTILE", "cpu_share_by_step"]

#: Which quantile of a step's recent shares it gets.
QUANTILE = 0.9
#: How many recent attempts of a step count.
LAST = 20
#: Attempts shorter than this (seconds) are not measured well enough to count.
MIN_TASK_S = 0.05
#: The least share a step gets (a task that only waits still costs something).
MIN_SHARE = 0.01
#: The statuses of attempts that ran to an end of their own.
FINISHED = ("succeeded", "failed", "timed_out")


def cpu_share_by_step(
    history: pd.DataFrame, *, quantile: float = QUANTILE, last: int = LAST
) -> dict[str, float]:
    """``{step: cores one task keeps busy}`` from an attempts frame (the history contract:
    ``step``, ``status``, ``started_at``, ``duration_s``, ``cpu_s``, ``cpu_count``); steps
    without a usable attempt are left out."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last!r}")
    needed = {"step", "status", "duration_s", "cpu_s"}
    if history.empty or not needed.issubset(history.columns):
        return {}
    duration = history["duration_s"].to_numpy(dtype="float64", na_value=np.nan)
    cpu = history["cpu_s"].to_numpy(dtype="float64", na_value=np.nan)
    status = history["status"].astype("string").fillna("")
    with np.errstate(invalid="ignore"):
        usable = (
            status.isin(FINISHED).to_numpy(dtype=bool)
            & np.isfinite(cpu)
            & (cpu >= 0)
            & np.isfinite(duration)
            & (duration >= MIN_TASK_S)
        )
    if not usable.any():
        return {}
    rows = history.loc[usable, [c for c in ("step", "started_at", "cpu_count") if c in history]]
    rows = rows.assign(
        share=cpu[usable] / duration[usable],
        ok=(status[usable] == "succeeded").to_numpy(dtype=bool),
        step=rows["step"].astype("string"),
    )
    if "started_at" in rows:
        rows = rows.sort_values("started_at", kind="stable")
    # succeeded attempts only, for the steps that have any
    has_ok = rows.groupby("step", sort=False)["ok"].transform("any").to_numpy(dtype=bool)
    rows = rows.loc[rows["ok"].to_numpy(dtype=bool) | ~has_ok]
    recent = rows.groupby("step", sort=False).tail(last)
    shares = recent.groupby("step", sort=False)["share"].quantile(quantile)
    has_cores = "cpu_count" in recent
    cores = recent.groupby("step", sort=False)["cpu_count"].max() if has_cores else None
    out: dict[str, float] = {}
    for step, share in shares.items():
        recorded = None if cores is None else cores.get(step)
        top = float(recorded) if recorded is not None and not pd.isna(recorded) else np.inf
        out[str(step)] = float(min(max(float(share), MIN_SHARE), max(top, 1.0)))
    return out
