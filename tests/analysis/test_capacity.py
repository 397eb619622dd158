"""What-if of concurrency and quantity: the planner's own plans, one per row, on a fixed
machine; what fits a cadence is read off those rows."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from matplotlib.figure import Figure

from planner.analysis.capacity import (
    OVERVIEW_COLUMNS,
    WHAT_IF_COLUMNS,
    cadence_overview,
    concurrency_what_if,
    fits_cadence,
    plan_advice,
    plot_what_if,
    quantity_what_if,
)
from planner.config import load_pipeline
from planner.history import HistoryStore
from planner.service import FixedMachine, Instance, MachineState
from planner.service.planning import PlanRequest, make_plan

if TYPE_CHECKING:
    from tests.analysis.conftest import SmallHistory

FREE_MB = 4000.0


@pytest.fixture(scope="module")
def instance(
    small_history: SmallHistory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instance]:
    """The history on a machine of 4 cores and 4000 MB free (no models: baselines)."""
    machine = FixedMachine(MachineState(cpu_count=4, free_memory_mb=FREE_MB))
    models = tmp_path_factory.mktemp("no-models")
    with HistoryStore(small_history.url) as store:
        yield Instance(store, models, machine=machine)


@pytest.fixture(scope="module")
def by_concurrency(instance: Instance, small_history: SmallHistory) -> pd.DataFrame:
    return concurrency_what_if(instance, small_history.tiny)


def test_each_row_is_the_plan_at_that_concurrency(
    by_concurrency: pd.DataFrame, instance: Instance, small_history: SmallHistory
) -> None:
    frame = by_concurrency
    assert list(frame.columns) == [c.name for c in WHAT_IF_COLUMNS]
    assert list(frame["concurrency"]) == [1, 2, 3, 4]  # up to the 4 tasks that can run at once
    pipeline = load_pipeline(small_history.tiny)
    for row in frame.itertuples(index=False):
        plan = make_plan(instance, pipeline, PlanRequest(concurrency=row.concurrency))
        assert (row.predicted_s, row.bound_s) == pytest.approx(
            (plan.run.predicted_s, plan.run.bound_s)
        )
        assert row.memory_mb == pytest.approx(row.concurrency * plan.memory_per_task_mb)
        assert row.fits_memory == (row.memory_mb <= 0.8 * FREE_MB)
        assert row.fits_cpu == (row.concurrency <= 3 / max(0.01, plan.cpu_per_task or 1.0))
        assert row.free_memory_mb == FREE_MB and pd.isna(row.cadence_s)
    assert frame["predicted_s"].is_monotonic_decreasing  # more slots never slow the run
    assert frame["memory_per_task_mb"].gt(0).all()
    assert frame["planned"].sum() == 1
    assert frame.loc[frame["planned"], "concurrency"].item() == 2  # the file says 2
    assert pd.isna(frame["fits_cadence"]).all()  # no cadence in the file


def test_the_smallest_concurrency_that_fits_a_cadence(
    by_concurrency: pd.DataFrame, instance: Instance, small_history: SmallHistory
) -> None:
    bounds = by_concurrency.set_index("concurrency")["bound_s"]
    cadence = float((bounds[1] + bounds[2]) / 2)  # 1 slot is too slow, 2 fit
    assert bounds[1] > cadence >= bounds[2]
    frame = concurrency_what_if(instance, small_history.tiny, [4, 1, 2], cadence=cadence)
    assert list(frame["concurrency"]) == [1, 2, 4] and (frame["cadence_s"] == cadence).all()
    assert list(frame["fits_cadence"]) == [False, True, True]
    fit = fits_cadence(frame)
    assert fit.value == 2 and fit.bound_s <= cadence and fit.within_machine
    assert fit.memory_mb == pytest.approx(frame.loc[1, "memory_mb"])
    assert fit.text.startswith("concurrency 2 fits a ")
    tight = fits_cadence(frame, cadence_s=float(bounds.min()) / 2)  # nothing fits
    assert tight.value is None and "no concurrency tried fits" in tight.text
    assert tight.cadence_needed_s == pytest.approx(frame["cadence_needed_s"].min())
    advice = plan_advice(instance, small_history.tiny, cadence=float(bounds.min()) / 2)
    assert any("cadence" in line for line in advice)


def test_the_largest_quantity_that_fits(instance: Instance, small_history: SmallHistory) -> None:
    frame = quantity_what_if(instance, small_history.tiny, [2.0, 0.5, 1.0], concurrency=2)
    assert list(frame["scale"]) == [0.5, 1.0, 2.0] and (frame["concurrency"] == 2).all()
    assert frame["predicted_s"].is_monotonic_increasing  # more work takes longer
    cadence = float(frame["bound_s"].iloc[1]) * 1.01  # x1 fits, x2 does not
    fit = fits_cadence(frame, cadence, by="scale")
    assert fit.value == 1.0 and fit.by == "scale" and fit.text.startswith("x1 fits")
    with pytest.raises(ValueError, match="no cadence"):
        fits_cadence(frame)


def test_the_overview_puts_the_longest_first(
    instance: Instance, small_history: SmallHistory
) -> None:
    frame = cadence_overview(instance, [small_history.tiny, small_history.other])
    assert list(frame.columns) == [c.name for c in OVERVIEW_COLUMNS]
    assert frame["bound_s"].is_monotonic_decreasing
    assert set(frame["pipeline"]) == {"tiny", "other"}
    assert set(frame["file"]) == {str(small_history.tiny), str(small_history.other)}


def test_a_url_plans_with_the_pipelines_models(small_history: SmallHistory) -> None:
    frame = concurrency_what_if(small_history.url, Path(small_history.tiny), [1, 2])
    assert list(frame["concurrency"]) == [1, 2] and frame["bound_s"].gt(0).all()


def test_the_what_if_figure(by_concurrency: pd.DataFrame) -> None:
    cadence = float(by_concurrency["bound_s"].median())
    for figure in (
        plot_what_if(by_concurrency, cadence),
        plot_what_if(by_concurrency.assign(scale=[0.5, 1.0, 1.5, 2.0]), by="scale"),
    ):
        assert isinstance(figure, Figure) and len(figure.axes) == 2  # with the memory axis
        axes = figure.axes[0]
        assert axes.lines and axes.collections and axes.get_legend() is not None
        figure.savefig(io.BytesIO(), format="png")
    empty = plot_what_if(by_concurrency.iloc[0:0])
    empty.savefig(io.BytesIO(), format="png")
    assert empty.axes[0].texts
