"""One run on a time line: its attempts on the slots they ran in, against its plan.

:func:`run_gantt` reads a run's attempts and the plan stored with it (the rows of
:func:`planner.service.timeline.run_timeline`, which the dashboard draws too);
:func:`plot_gantt` draws them. The history does not say which worker slot an attempt
took, so slots are assigned by :func:`~planner.service.timeline.assign_slots`, greedily in
start order (the lowest slot free at the attempt's start): no two bars of a slot overlap,
and no more slots are used than attempts ever ran at once, which is at most the run's
concurrency.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from planner.analysis.columns import Column, documented, typed_frame
from planner.analysis.figures import new_figure, no_data, step_colors
from planner.analysis.history import Source, store_of
from planner.service.timeline import assign_slots, run_timeline
from planner.status import AttemptStatus

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["GANTT_COLUMNS", "assign_slots", "plot_gantt", "run_gantt"]

GANTT_COLUMNS: tuple[Column, ...] = (
    Column("step", "string", "", "step id"),
    Column("account", "string", "", "account (<NA>: a step not per account)"),
    Column("attempt", "int64", "", "1 for the first try of the task"),
    Column("status", "string", "", "succeeded, failed, timed_out, cancelled, running, ..."),
    Column("start_s", "float64", "s", "when the attempt started, from the run's start"),
    Column("end_s", "float64", "s", "when it ended, from the run's start (running: now)"),
    Column("slot", "int64", "", "the slot drawn for it (0 first; see assign_slots)"),
    Column("predicted_s", "float64", "s", "the task's prediction in the run's plan (NaN: none)"),
    Column("bound_s", "float64", "s", "the task's upper bound in that plan (NaN: none)"),
    Column("estimate", "string", "", "where the prediction came from (<NA>: no plan)"),
)


@documented(GANTT_COLUMNS)
def run_gantt(source: Source, run_id: str, *, now: datetime | None = None) -> pd.DataFrame:
    """One row per attempt of run ``run_id`` that ran (skipped tasks and tasks cancelled
    before they started are left out), in start order, with the prediction and bound of
    its task in the plan stored with the run. An attempt still going ends at ``now``
    (default: the current time), or at the run's end when the run has ended."""
    with store_of(source) as store:
        rows = run_timeline(store, run_id, now or datetime.now(UTC))
    return typed_frame(rows, GANTT_COLUMNS)


def _na(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


_GOOD = frozenset({AttemptStatus.SUCCEEDED.value, AttemptStatus.RUNNING.value})


def plot_gantt(frame: pd.DataFrame, *, title: str | None = None) -> Figure:
    """The attempts of :func:`run_gantt` as bars on their slots, colored by step. The thin
    black line in a bar's upper part, ending in a tick, is the task's predicted length (a
    bar longer than its line ran over its prediction), a grey tick its upper bound; failed,
    timed out or cancelled attempts are hatched with a red edge and a red cross at their
    end. Gaps in a slot are time no task used it (waiting on dependencies, or the end of
    the run)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    slots = int(frame["slot"].max()) + 1 if not frame.empty else 1
    figure, axes = new_figure(height=max(2.5, 0.45 * slots + 1.5))
    if frame.empty:
        no_data(axes, "no attempt ran in this run")
        return figure
    colors = step_colors(frame["step"].unique())
    bars: list[Any] = list(frame.itertuples(index=False))
    for row in bars:
        bad = row.status not in _GOOD
        y = float(row.slot)
        axes.barh(
            y,
            row.end_s - row.start_s,
            left=row.start_s,
            height=0.7,
            color=colors[row.step],
            edgecolor="red" if bad else "white",
            linewidth=1.5 if bad else 0.5,
            hatch="//" if bad else None,
        )
        if bad:
            axes.plot([row.end_s], [y], marker="x", color="red", markersize=7)
        if not _na(row.predicted_s):  # in the bar's upper part, a tick at its end
            end, high = row.start_s + row.predicted_s, y - 0.2
            axes.plot([row.start_s, end], [high, high], color="black", lw=0.8)
            axes.plot([end], [high], marker="|", color="black", markersize=6)
        if not _na(row.bound_s):
            axes.plot([row.start_s + row.bound_s], [y], marker="|", color="grey", markersize=9)
    axes.set_yticks(range(slots), [f"slot {k}" for k in range(slots)])
    axes.set_ylim(slots - 0.5, -0.5)  # slot 0 on top
    axes.set_xlabel("seconds from the run's start")
    axes.set_title(title or "run: attempts by slot")
    handles: list[Any] = [Patch(color=color, label=step) for step, color in colors.items()]
    handles += [
        Patch(facecolor="white", edgecolor="red", hatch="//", label="failed attempt"),
        Line2D([], [], color="black", lw=1, label="predicted"),
        Line2D([], [], color="grey", marker="|", linestyle="none", label="bound"),
    ]
    axes.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure
