"""Trends, slow accounts and collisions, checked against pandas' own arithmetic and the
runs as recorded; the plots return figures that render without a warning."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from matplotlib.figure import Figure

from planner.analysis.history import attempts, decisions, runs
from planner.analysis.trends import (
    COLLISION_COLUMNS,
    SLOW_ACCOUNT_COLUMNS,
    STEP_SUMMARY_COLUMNS,
    TREND_COLUMNS,
    collisions,
    plot_collisions,
    plot_slow_accounts,
    plot_step_trends,
    slow_accounts,
    step_summary,
    step_trends,
)

if TYPE_CHECKING:
    from tests.analysis.conftest import SmallHistory


@pytest.fixture(scope="module")
def frame(small_history: SmallHistory) -> pd.DataFrame:
    return attempts(small_history.url, "tiny")


def _rendered(figure: Figure) -> Figure:
    assert isinstance(figure, Figure) and figure.axes
    figure.savefig(io.BytesIO(), format="png")  # draws every artist: warnings are errors
    return figure


def test_rolling_medians_are_pandas_own(frame: pd.DataFrame) -> None:
    trends = step_trends(frame, window=3)
    assert list(trends.columns) == [c.name for c in TREND_COLUMNS]
    done = frame[(frame["status"] == "succeeded") & frame["duration_s"].notna()]
    assert len(trends) == len(done) and set(trends["step"]) == {"prep", "work", "sum"}
    for step, group in trends.groupby("step"):
        mine = done[done["step"] == step].sort_values("started_at")
        expected = mine["duration_s"].rolling(3, min_periods=1).median()
        assert list(group["median_s"]) == pytest.approx(list(expected))
        assert list(group["duration_s"]) == list(mine["duration_s"])
        per_unit = (mine["duration_s"] / mine["quantity"]).rolling(3, min_periods=1).median()
        assert list(group["median_per_quantity_s"]) == pytest.approx(list(per_unit), nan_ok=True)
        assert list(group["n"]) == [min(3, k + 1) for k in range(len(group))]
    whole = step_trends(frame, window=10_000)  # the last row sees every attempt
    for step, group in whole.groupby("step"):
        expected_all = done.loc[done["step"] == step, "duration_s"].median()
        assert group["median_s"].iloc[-1] == pytest.approx(expected_all)
    by_time = step_trends(frame, window="1D")  # a time window: here, every earlier attempt
    assert list(by_time["median_s"]) == pytest.approx(list(whole["median_s"]))
    with pytest.raises(ValueError, match="at least 1"):
        step_trends(frame, window=0)


def test_the_step_summary_counts_and_medians(frame: pd.DataFrame) -> None:
    summary = step_summary(frame).set_index("step")
    assert list(step_summary(frame).columns) == [c.name for c in STEP_SUMMARY_COLUMNS]
    assert summary["median_s"].is_monotonic_decreasing
    for step, mine in frame.groupby("step"):
        done = mine.loc[mine["status"] == "succeeded", "duration_s"]
        row = summary.loc[step]
        assert row["attempts"] == len(mine)
        assert row["not_succeeded"] == pytest.approx((mine["status"] != "succeeded").mean())
        assert (row["median_s"], row["max_s"]) == pytest.approx((done.median(), done.max()))
        assert row["p90_s"] == pytest.approx(done.quantile(0.9))
    assert summary.loc["work", "not_succeeded"] == pytest.approx(1 / 17)  # a2's first try
    assert summary.loc["prep", "median_s"] > summary.loc["sum", "median_s"]


def test_the_slow_account_is_found_with_its_counts(
    frame: pd.DataFrame, small_history: SmallHistory
) -> None:
    slow = slow_accounts(frame, step="prep")
    assert list(slow.columns) == [c.name for c in SLOW_ACCOUNT_COLUMNS]
    first = slow.iloc[0]
    assert (first["step"], first["account"]) == ("prep", "a3")  # it sleeps three times longer
    prep = frame[(frame["step"] == "prep") & (frame["status"] == "succeeded")]
    mine = prep.loc[prep["account"] == "a3", "duration_s"]
    assert first["attempts"] == len(mine) == len(small_history.tiny_runs)
    assert first["median_s"] == pytest.approx(mine.median())
    assert first["step_median_s"] == pytest.approx(prep["duration_s"].median())
    assert first["excess_s"] == pytest.approx(first["median_s"] - first["step_median_s"])
    assert first["slower_share"] == 1.0  # slower than the others in every run
    assert 1.5 < first["ratio"] < 4.0
    assert (slow["excess_s"] > 0).all() and slow["excess_s"].is_monotonic_decreasing
    everywhere = slow_accounts(frame, top=None)
    assert set(everywhere["step"]) <= {"prep", "work"}  # "sum" has no accounts
    assert len(slow_accounts(frame, top=1)) == 1
    assert slow_accounts(frame, step="no-such-step").empty


def test_collisions_are_the_overlap_and_the_daemons_word(small_history: SmallHistory) -> None:
    every = runs(small_history.url)
    found = collisions(every, decisions(small_history.url))
    assert list(found.columns) == [c.name for c in COLLISION_COLUMNS]
    assert list(found["kind"]) == ["deferred", "refused", "overlap"]  # by time
    overlap = found.iloc[-1]
    tiny_run = small_history.tiny_runs[2]
    assert (overlap["run_id"], overlap["other_run_id"]) == (tiny_run, small_history.other_run)
    assert (overlap["pipeline"], overlap["other_pipeline"]) == ("tiny", "other")
    a = every.set_index("run_id").loc[tiny_run]
    b = every.set_index("run_id").loc[small_history.other_run]
    by_hand = (min(a["finished_at"], b["finished_at"]) - a["started_at"]).total_seconds()
    assert overlap["overlap_s"] == pytest.approx(by_hand) and by_hand > 0
    assert overlap["at"] == a["started_at"]
    deferral = found.iloc[0]
    assert deferral["run_id"] == small_history.other_run and deferral["pipeline"] == "other"
    only_tiny = collisions(runs(small_history.url, "tiny"))
    assert only_tiny.empty  # the runs of one pipeline never overlap
    still = every.copy()
    still.loc[still["run_id"] == tiny_run, "finished_at"] = pd.NaT  # a run still going
    later = collisions(still, now=b["finished_at"] + pd.Timedelta(seconds=5))
    assert len(later) == 2  # overlaps the other run, and every tiny run after it
    assert set(later["other_run_id"]) == {small_history.other_run, tiny_run}


def test_plots_return_figures_that_render(frame: pd.DataFrame) -> None:
    trends = step_trends(frame)
    figure = _rendered(plot_step_trends(trends))
    assert len(figure.axes[0].lines) == 3 and len(figure.axes[0].collections) == 3
    _rendered(plot_step_trends(trends, per_quantity=True))
    slow = slow_accounts(frame)
    bars = _rendered(plot_slow_accounts(slow))
    assert len(bars.axes[0].patches) == len(slow) > 0
    for empty in (plot_step_trends(trends.iloc[0:0]), plot_slow_accounts(slow.iloc[0:0])):
        assert _rendered(empty).axes[0].texts  # says there is nothing to show


def test_the_collisions_figure(small_history: SmallHistory) -> None:
    every = runs(small_history.url)
    events = collisions(every, decisions(small_history.url))
    figure = _rendered(plot_collisions(every, events))
    axes = figure.axes[0]
    assert len(axes.patches) == len(every) + 1  # a bar per run, the overlap's span
    assert len(axes.lines) == 2  # the deferred and the refused start
    assert [t.get_text() for t in axes.get_yticklabels()] == ["other", "tiny"]
    assert _rendered(plot_collisions(every.iloc[0:0])).axes[0].texts
