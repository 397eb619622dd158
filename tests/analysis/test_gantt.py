"""The Gantt of a run: every attempt that ran, on slots that never overlap and never
outnumber the run's concurrency, with its task's prediction from the run's stored plan."""

from __future__ import annotations

import io
import itertools
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.figure import Figure

from planner.analysis.gantt import GANTT_COLUMNS, assign_slots, plot_gantt, run_gantt
from planner.analysis.history import plan_tasks, runs
from planner.errors import UsageError
from planner.history import HistoryStore

if TYPE_CHECKING:
    import pandas as pd

    from tests.analysis.conftest import SmallHistory


def _no_overlap_within_a_slot(frame: pd.DataFrame) -> None:
    for _slot, bars in frame.groupby("slot"):
        ordered = bars.sort_values("start_s")
        ends = ordered["end_s"].to_numpy()[:-1]
        starts = ordered["start_s"].to_numpy()[1:]
        assert (ends <= starts).all()


def test_every_run_fits_its_concurrency_without_overlaps(small_history: SmallHistory) -> None:
    every = runs(small_history.url, "tiny")
    for run in every.itertuples(index=False):
        frame = run_gantt(small_history.url, run.run_id)
        assert list(frame.columns) == [c.name for c in GANTT_COLUMNS]
        _no_overlap_within_a_slot(frame)
        assert frame["slot"].nunique() == frame["slot"].max() + 1 <= run.concurrency == 2
        assert (frame["start_s"] >= 0).all() and (frame["end_s"] >= frame["start_s"]).all()
        assert frame["end_s"].max() <= run.duration_s + 1e-6
        with HistoryStore(small_history.url) as store:
            recorded = store.attempts_for_run(run.run_id)
        assert len(frame) == len(recorded)  # nothing skipped in these runs
        durations = sorted(a.duration_s or 0.0 for a in recorded)
        assert sorted(frame["end_s"] - frame["start_s"]) == pytest.approx(durations, abs=1e-3)


def test_the_plan_and_the_failed_attempt_are_on_the_bars(small_history: SmallHistory) -> None:
    first = small_history.tiny_runs[0]
    frame = run_gantt(small_history.url, first)
    failed = frame[frame["status"] != "succeeded"]
    assert list(zip(failed["step"], failed["account"], failed["attempt"], strict=True)) == [
        ("work", "a2", 1)
    ]
    retried = frame[(frame["step"] == "work") & (frame["account"] == "a2")]
    assert list(retried["attempt"]) == [1, 2] and retried["status"].iloc[-1] == "succeeded"
    last = small_history.tiny_runs[-1]
    frame = run_gantt(small_history.url, last)
    plan = plan_tasks(small_history.url, "tiny", last).fillna({"account": "-"})
    planned = {(r.step, r.account): (r.predicted_s, r.bound_s) for r in plan.itertuples()}
    for row in frame.fillna({"account": "-"}).itertuples():
        assert (row.predicted_s, row.bound_s) == planned[(row.step, row.account)]
    assert (frame["estimate"] != "default").all()  # three runs of history before it


@given(
    st.lists(
        st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0.001, 20, allow_nan=False)),
        max_size=40,
    )
)
def test_greedy_slots_never_overlap_and_use_the_fewest(pairs: list[tuple[float, float]]) -> None:
    spans = [(start, start + length) for start, length in pairs]
    slots = assign_slots(spans)
    for k in set(slots):
        mine = sorted(s for s, slot in zip(spans, slots, strict=True) if slot == k)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(mine))
    # the most spans running at one instant (a span ending at t no longer runs at t)
    most = max((sum(1 for s, e in spans if s <= t < e) for t, _ in spans), default=0)
    assert len(set(slots)) == max(most, 1 if spans else 0)
    assert sorted(set(slots)) == list(range(len(set(slots))))


def test_the_gantt_figure_has_a_bar_per_attempt(small_history: SmallHistory) -> None:
    frame = run_gantt(small_history.url, small_history.tiny_runs[0])
    figure = plot_gantt(frame, title="first run")
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    axes = figure.axes[0]
    assert len(axes.patches) == len(frame)
    assert sum(1 for p in axes.patches if p.get_hatch()) == 1  # the failed attempt
    assert axes.get_legend() is not None and axes.get_title() == "first run"
    figure.savefig(io.BytesIO(), format="png")
    empty = plot_gantt(frame.iloc[0:0])
    empty.savefig(io.BytesIO(), format="png")
    assert empty.axes[0].texts


def test_an_unknown_run_is_a_usage_error(small_history: SmallHistory) -> None:
    with pytest.raises(UsageError, match="no such run"):
        run_gantt(small_history.url, "no-such-run")
