"""How long steps take and how that changes, which accounts are slow, where runs collided.

Each function takes frames from :mod:`planner.analysis.history` (``attempts``, ``runs``,
``decisions``) and returns a frame whose columns its docstring lists; the ``plot_*``
functions draw those frames and return the figure. Durations are of succeeded attempts
only: a failed attempt's time says when it failed, not how long the work takes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from planner.analysis.columns import TIME, Column, conform, documented, typed_frame
from planner.analysis.figures import new_figure, no_data, step_colors, utc_naive

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "COLLISION_COLUMNS",
    "SLOW_ACCOUNT_COLUMNS",
    "STEP_SUMMARY_COLUMNS",
    "TREND_COLUMNS",
    "collisions",
    "plot_collisions",
    "plot_slow_accounts",
    "plot_step_trends",
    "slow_accounts",
    "step_summary",
    "step_trends",
]

_DONE = "succeeded"

STEP_SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("step", "string", "", "step id"),
    Column("attempts", "Int64", "", "its attempts, retries included"),
    Column("not_succeeded", "float64", "", "share of them that failed, timed out, ..."),
    Column("median_s", "float64", "s", "median duration of the succeeded ones"),
    Column("p90_s", "float64", "s", "their 90th percentile"),
    Column("max_s", "float64", "s", "the longest"),
    Column("median_per_quantity_s", "float64", "s", "median of duration / quantity"),
)


@documented(STEP_SUMMARY_COLUMNS)
def step_summary(attempts: pd.DataFrame) -> pd.DataFrame:
    """How long each step takes: one row per step, the longest median first (attempts
    still running or skipped are not counted)."""
    finished = attempts[~attempts["status"].isin(["running", "skipped"])]
    done = _done(finished)
    per_unit = done["duration_s"] / done["quantity"].where(done["quantity"] > 0)
    durations = done.assign(per_unit=per_unit).groupby("step")
    table = durations.agg(
        median_s=("duration_s", "median"),
        p90_s=("duration_s", lambda d: d.quantile(0.9)),
        max_s=("duration_s", "max"),
        median_per_quantity_s=("per_unit", "median"),
    )
    counts = finished.groupby("step").agg(
        attempts=("status", "size"), not_succeeded=("status", lambda s: (s != _DONE).mean())
    )
    joined = counts.join(table, how="left").reset_index()
    joined = joined.sort_values(["median_s", "step"], ascending=[False, True], kind="stable")
    return conform(joined, STEP_SUMMARY_COLUMNS)


TREND_COLUMNS: tuple[Column, ...] = (
    Column("step", "string", "", "step id"),
    Column("run_id", "string", "", "the attempt's run"),
    Column("account", "string", "", "account (<NA>: a step not per account)"),
    Column("started_at", TIME, "", "when the attempt started"),
    Column("quantity", "float64", "", "its quantity (NaN: unknown)"),
    Column("duration_s", "float64", "s", "its duration"),
    Column("median_s", "float64", "s", "rolling median of duration_s over the window"),
    Column("per_quantity_s", "float64", "s", "duration_s / quantity (NaN: no quantity)"),
    Column("median_per_quantity_s", "float64", "s", "rolling median of per_quantity_s"),
    Column("n", "Int64", "", "attempts in the window"),
)


def _done(attempts: pd.DataFrame) -> pd.DataFrame:
    """The succeeded attempts with a duration, by step and start."""
    mask = (attempts["status"] == _DONE).fillna(False) & attempts["duration_s"].notna()
    return attempts[mask].sort_values(["step", "started_at"], kind="stable")


@documented(TREND_COLUMNS)
def step_trends(attempts: pd.DataFrame, window: int | str = 10) -> pd.DataFrame:
    """Per step, every succeeded attempt in time order with the rolling median of its
    step's durations over ``window``: the last ``window`` attempts of the step (an int,
    this one included), or the attempts started within a time span ending at this one (a
    pandas offset such as ``"7D"``). ``per_quantity_s`` takes the quantity out, so a step
    that got slower only because it was given more work keeps a flat median there."""
    import numpy as np

    if isinstance(window, int) and window < 1:
        raise ValueError(f"window must be at least 1 attempt, got {window}")
    done = _done(attempts).copy()
    quantity = done["quantity"].where(done["quantity"] > 0)
    done["per_quantity_s"] = done["duration_s"] / quantity
    parts = []
    for _step, group in done.groupby("step", sort=True):
        timed = group.set_index("started_at")
        rolled = timed[["duration_s", "per_quantity_s"]].rolling(window, min_periods=1)
        medians = rolled.median()
        part = group.copy()
        part["median_s"] = medians["duration_s"].to_numpy()
        part["median_per_quantity_s"] = medians["per_quantity_s"].to_numpy()
        part["n"] = rolled.count()["duration_s"].to_numpy().astype(np.int64)
        parts.append(part)
    import pandas as pd

    joined = pd.concat(parts) if parts else done.iloc[0:0]
    return conform(joined, TREND_COLUMNS)


def plot_step_trends(
    trends: pd.DataFrame, *, per_quantity: bool = False, log: bool = False
) -> Figure:
    """Each step's attempts (dots) and their rolling median (line) over time, from
    :func:`step_trends`; ``per_quantity``: seconds per unit of quantity instead; ``log``: a
    logarithmic duration axis, for steps of very different lengths. A line that climbs is a
    step getting slower; dots far above their line are outliers."""
    figure, axes = new_figure()
    value, median = (
        ("per_quantity_s", "median_per_quantity_s") if per_quantity else ("duration_s", "median_s")
    )
    shown = trends[trends[value].notna()]
    if shown.empty:
        no_data(axes, "no succeeded attempts")
        return figure
    colors = step_colors(shown["step"].unique())
    for step, group in shown.groupby("step", sort=False):
        times = utc_naive(group["started_at"])
        color = colors[str(step)]
        axes.scatter(times, group[value].to_numpy(), s=10, alpha=0.35, color=color)
        axes.plot(times, group[median].to_numpy(), color=color, label=str(step))
    axes.set_xlabel("attempt started (UTC)")
    axes.set_ylabel("seconds per unit of quantity" if per_quantity else "duration (s)")
    if log:
        axes.set_yscale("log")
    axes.set_title("duration per step: attempts and rolling median")
    axes.legend(title="step", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.autofmt_xdate()
    return figure


SLOW_ACCOUNT_COLUMNS: tuple[Column, ...] = (
    Column("step", "string", "", "step id"),
    Column("account", "string", "", "account"),
    Column("attempts", "Int64", "", "its succeeded attempts of the step"),
    Column("median_s", "float64", "s", "their median duration"),
    Column("step_median_s", "float64", "s", "the median of the step's succeeded attempts"),
    Column("excess_s", "float64", "s", "median_s - step_median_s"),
    Column("ratio", "float64", "", "median_s / step_median_s"),
    Column("slower_share", "float64", "", "share of its attempts slower than the step's "
           "median in the same run (1.0: slowest in every run)"),
)  # fmt: skip


@documented(SLOW_ACCOUNT_COLUMNS)
def slow_accounts(
    attempts: pd.DataFrame, step: str | None = None, top: int | None = 10
) -> pd.DataFrame:
    """Accounts whose median duration in a step (of ``step``, or of every per-account
    step) is above the step's median, the largest excess in seconds first, at most ``top``
    (``None``: all). ``slower_share`` compares each attempt with the other accounts of the
    same run, so that runs given more work do not make an account look slow."""
    done = _done(attempts)
    done = done[done["account"].notna()]
    if step is not None:
        done = done[done["step"] == step]
    if done.empty:
        return conform(done, SLOW_ACCOUNT_COLUMNS)
    run_median = done.groupby(["run_id", "step"])["duration_s"].transform("median")
    slower = (done["duration_s"] > run_median).astype(float)
    step_median = done.groupby("step")["duration_s"].median()
    grouped = done.assign(slower=slower).groupby(["step", "account"], sort=True)
    table = grouped.agg(
        attempts=("duration_s", "size"),
        median_s=("duration_s", "median"),
        slower_share=("slower", "mean"),
    ).reset_index()
    table["step_median_s"] = table["step"].map(step_median).astype(float)
    table["excess_s"] = table["median_s"] - table["step_median_s"]
    table["ratio"] = table["median_s"] / table["step_median_s"].where(table["step_median_s"] > 0)
    above = table[table["excess_s"] > 0].sort_values(
        ["excess_s", "step", "account"], ascending=[False, True, True], kind="stable"
    )
    if top is not None:
        above = above.head(top)
    return conform(above, SLOW_ACCOUNT_COLUMNS)


def plot_slow_accounts(slow: pd.DataFrame) -> Figure:
    """The accounts of :func:`slow_accounts` as bars of their excess over the step's
    median (seconds), each labelled with its ratio, its share of runs in which it was
    slower than the others and its attempts: a long bar with a share near 1 is an account
    that is slow in every run, not one bad day."""
    figure, axes = new_figure(height=max(2.5, 0.4 * len(slow) + 1.2))
    if slow.empty:
        no_data(axes, "no account is slower than its step's median")
        return figure
    ordered = slow.iloc[::-1]
    labels = [f"{s} / {a}" for s, a in zip(ordered["step"], ordered["account"], strict=True)]
    colors = step_colors(slow["step"].unique())
    positions = range(len(ordered))
    axes.barh(
        list(positions),
        ordered["excess_s"].to_numpy(),
        color=[colors[str(s)] for s in ordered["step"]],
    )
    for y, (_i, row) in zip(positions, ordered.iterrows(), strict=True):
        text = f" x{row['ratio']:.2f}, slower in {row['slower_share']:.0%}, n={row['attempts']}"
        axes.text(float(row["excess_s"]), y, text, va="center", fontsize="small")
    axes.set_yticks(list(positions), labels)
    axes.set_xlabel("median duration above the step's median (s)")
    axes.set_title("slow accounts")
    axes.margins(x=0.35)
    return figure


COLLISION_COLUMNS: tuple[Column, ...] = (
    Column("at", TIME, "", "when the overlap began, or when the daemon decided"),
    Column("kind", "string", "", "overlap (two runs at once), deferred or refused (a start)"),
    Column("pipeline", "string", "", "the pipeline (of the later run, for an overlap)"),
    Column("run_id", "string", "", "the later run; deferred: the run that held the lease"),
    Column("other_pipeline", "string", "", "overlap: the pipeline of the earlier run"),
    Column("other_run_id", "string", "", "overlap: the earlier run"),
    Column("overlap_s", "float64", "s", "overlap: how long both ran"),
    Column("reason", "string", "", "in words"),
)


@documented(COLLISION_COLUMNS)
def collisions(
    runs: pd.DataFrame,
    decisions: pd.DataFrame | None = None,
    *,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Where runs got in each other's way, oldest first: every pair of runs (of any
    pipelines) that ran at the same time, and the starts the daemon deferred (a run still
    held the pipeline) or refused, from ``decisions``. A run still going counts until
    ``now`` (default: the current time)."""
    import pandas as pd

    moment = pd.Timestamp(now or datetime.now(UTC))
    rows: list[dict[str, Any]] = []
    records: list[Any] = list(runs.itertuples(index=False))
    spans = sorted(
        (
            (row.started_at, moment if pd.isna(row.finished_at) else row.finished_at, row)
            for row in records
        ),
        key=lambda span: (span[0], str(span[2].run_id)),
    )
    active: list[tuple[Any, Any, Any]] = []
    for start, end, run in spans:  # sweep by start: those still running overlap this one
        active = [span for span in active if span[1] > start]
        for _s, other_end, other in active:
            overlap = (min(end, other_end) - start).total_seconds()
            rows.append(
                {
                    "at": start,
                    "kind": "overlap",
                    "pipeline": run.pipeline,
                    "run_id": run.run_id,
                    "other_pipeline": other.pipeline,
                    "other_run_id": other.run_id,
                    "overlap_s": overlap,
                    "reason": f"run {run.run_id} ({run.pipeline}) started while run "
                    f"{other.run_id} ({other.pipeline}) ran: together {overlap:.1f}s",
                }
            )
        active.append((start, end, run))
    if decisions is not None and not decisions.empty:
        wanted = decisions[decisions["kind"].isin(["deferred", "refused"]).fillna(False)]
        chosen: list[Any] = list(wanted.itertuples(index=False))
        rows.extend(
            {
                "at": d.at,
                "kind": d.kind,
                "pipeline": d.pipeline,
                "run_id": None if pd.isna(d.run_id) else d.run_id,
                "reason": d.reason,
            }
            for d in chosen
        )
    rows.sort(key=lambda row: row["at"])
    return typed_frame(rows, COLLISION_COLUMNS)


def plot_collisions(runs: pd.DataFrame, events: pd.DataFrame | None = None) -> Figure:
    """Every run as a bar on its pipeline's row (green: succeeded, red: not), the overlaps
    of :func:`collisions` shaded in orange, and its deferred (triangle) and refused (cross)
    starts: orange shading is where runs shared the machine, a triangle a start that had
    to wait for the pipeline's own previous run."""
    import pandas as pd
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure, axes = new_figure(height=max(2.5, 0.6 * runs["pipeline"].nunique() + 1.5))
    if runs.empty:
        no_data(axes, "no runs")
        return figure
    names = sorted(runs["pipeline"].unique())
    row = {name: index for index, name in enumerate(names)}
    starts = runs["started_at"]
    ends = runs["finished_at"].fillna(pd.Timestamp(datetime.now(UTC)))
    begin = pd.Timestamp(starts.min())
    seconds = (starts - begin).dt.total_seconds()
    lengths = (ends - starts).dt.total_seconds()
    for y, (x, width, status) in zip(
        runs["pipeline"].map(row), zip(seconds, lengths, runs["status"], strict=True), strict=True
    ):
        color = "tab:green" if status == "succeeded" else "tab:red"
        axes.barh(y, width, left=x, height=0.6, color=color, edgecolor="white")
    found = events if events is not None else collisions(runs)
    marks = {"deferred": "v", "refused": "X"}
    listed: list[Any] = list(found.itertuples(index=False))
    for event in listed:
        at = (event.at - begin).total_seconds()
        if event.kind == "overlap":
            axes.axvspan(at, at + event.overlap_s, color="orange", alpha=0.3, lw=0)
        elif event.pipeline in row:
            axes.plot([at], [row[event.pipeline]], marker=marks[event.kind], color="black")
    axes.set_yticks(range(len(names)), names)
    axes.set_ylim(len(names) - 0.5, -0.5)
    axes.set_xlabel(f"seconds from the first run's start ({begin:%Y-%m-%d %H:%M:%S} UTC)")
    axes.set_title("runs, overlaps and deferred or refused starts")
    handles = [
        Patch(color="tab:green", label="run succeeded"),
        Patch(color="tab:red", label="run not succeeded"),
        Patch(color="orange", alpha=0.3, label="runs overlap"),
        Line2D([], [], marker="v", color="black", linestyle="none", label="start deferred"),
        Line2D([], [], marker="X", color="black", linestyle="none", label="start refused"),
    ]
    axes.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure
