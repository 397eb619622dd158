"""What a replay keeps: the runs (or occurrences) that ran whole.

Partial runs (``--steps``, ``--accounts``), resumes, cancelled, abandoned and running runs
replayed as if they were full runs would distort the simulation (a fixed policy that
overran every full run would look like "22 % overrun"). :func:`replay_series` builds the
series of :mod:`planner.planning.simulate` from what ran whole and counts what it left
out. Light at import (the views of runs read :class:`RunKind`): numpy and pandas are
imported where they are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from planner.planning.simulate import Series

__all__ = ["LEFT_OUT", "Replay", "RunKind", "replay_series"]

LEFT_OUT = ("partial", "resumed", "cancelled", "abandoned", "running")


@dataclass(frozen=True)
class RunKind:
    """A run as the runs table tells it: final ``status``, the ``steps`` and ``accounts`` it
    chose when it chose a subset (``None``: all), the run it resumed (``resumed_from``)."""

    status: str
    steps: tuple[str, ...] | None = None
    accounts: tuple[str, ...] | None = None
    resumed_from: str | None = None

    @property
    def partial(self) -> bool:
        return self.steps is not None or self.accounts is not None

    @property
    def kind(self) -> str:
        """``full`` or the first that applies of ``running``, ``abandoned``, ``cancelled``,
        ``resumed``, ``partial``."""
        if self.status in ("running", "abandoned", "cancelled"):
            return self.status
        if self.resumed_from is not None:
            return "resumed"
        return "partial" if self.partial else "full"


@dataclass(frozen=True)
class Replay:
    """What :func:`replay_series` kept: ``replayed`` runs (``by == "run"``) or occurrences,
    and how many it left out for each reason of :data:`LEFT_OUT`."""

    by: str
    replayed: int
    left_out: Mapping[str, int]


def replay_series(
    frame: pd.DataFrame, by: str = "run", runs: Mapping[str, RunKind] | None = None
) -> tuple[list[Series], Replay]:
    """The series of ``frame`` (:func:`series_from_frame`) made only of what ran whole.

    ``runs``: run id -> :class:`RunKind` of planner's own runs; rows of other run ids
    (imports) are all kept. By run, only ``full`` runs (no subset of steps or accounts,
    not a resume, ended succeeded or failed) are replayed. By step or account, skipped
    attempts (never ran) are dropped, then an occurrence is left out under the strongest
    reason of :data:`LEFT_OUT` that applies: its run is running or abandoned; it has a
    cancelled or interrupted attempt; its run is a resume (not by ``step,account``: a
    task is whole); its run chose a subset of accounts (by step) or steps (by account).
    """
    from planner.planning.simulate import BY_CHOICES, series_from_frame

    if by not in BY_CHOICES:
        raise ValueError(f"by must be one of {', '.join(BY_CHOICES)}, got {by!r}")
    left_out = dict.fromkeys(LEFT_OUT, 0)
    if runs and len(frame):
        frame = _whole(frame, by, runs, left_out)
    series = series_from_frame(frame, by)
    return series, Replay(by, sum(len(s.durations) for s in series), left_out)


def _whole(
    frame: pd.DataFrame, by: str, runs: Mapping[str, RunKind], left_out: dict[str, int]
) -> pd.DataFrame:
    """``frame`` without what :func:`replay_series` leaves out; counts in ``left_out``."""
    import numpy as np
    import pandas as pd

    from planner.planning.simulate import series_key

    frame = frame.reset_index(drop=True)
    run_ids = frame["run_id"].astype("string")
    ours = run_ids.isin(list(runs)).fillna(False).to_numpy(dtype=bool)
    status = frame["status"].astype("string").fillna("").to_numpy(dtype=object)
    if by == "run":
        kinds = run_ids.map({r: k.kind for r, k in runs.items()}).fillna("full")
        drop = ours & (kinds != "full").to_numpy(dtype=bool)
        for kind, count in run_ids[drop].groupby(kinds[drop]).nunique().items():
            left_out[str(kind)] += int(count)
        return frame.loc[~drop]
    rank = {reason: i + 1 for i, reason in enumerate(LEFT_OUT)}
    per_run = {r: rank.get(_occurrence_reason(k, by), 0) for r, k in runs.items()}
    score = run_ids.map(per_run).fillna(0).astype("int64").to_numpy()
    broken = ours & np.isin(status, ["cancelled", "interrupted"])
    score = np.where(broken, np.maximum(score, rank["cancelled"]), score)
    ran = ~(ours & (status == "skipped"))  # a skipped task never ran: not part of anything
    group = (series_key(frame, by) + "\x1e" + run_ids.fillna(""))[ran]
    worst = pd.Series(score[ran], index=group.index).groupby(group).transform("max").to_numpy()
    for reason, i in rank.items():
        left_out[reason] += int(group[worst == i].nunique())
    kept: pd.DataFrame = frame.loc[ran].loc[worst == 0]
    return kept


def _occurrence_reason(kind: RunKind, by: str) -> str:
    """Why the run's occurrences in a series ``by`` step/account are not whole ("": they are)."""
    if kind.status in ("running", "abandoned"):
        return kind.status
    if kind.resumed_from is not None and by != "step,account":
        return "resumed"
    subset = {"step": kind.accounts, "account": kind.steps}.get(by)
    return "partial" if subset is not None else ""
