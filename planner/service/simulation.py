"""Replay recorded durations through schedule policies: the use case behind
``planner simulate`` (and the analysts' notebooks).

Planner's bounds come from its real predictor machinery run causally
(:func:`planner.learning.online.causal_bounds`): the duration model is fitted on the first
``train_fraction`` of the occurrences (in start order, those finished by the split) and
each later occurrence gets the bound issued at its recorded start, the online calibration
fed only with occurrences finished by then. Every policy is scored on the same later part.

What is replayed (:func:`load_series`): planner's own runs are told apart by the runs
table (:func:`planner.service.views.run_kinds`): by run, full runs only; by step or
account, the occurrences that ran whole (:func:`planner.planning.replay.replay_series`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.history import HistoryStore
    from planner.planning.replay import Replay
    from planner.planning.simulate import Series, SimulationResult

__all__ = ["REFITS", "TRAIN_FRACTION", "load_series", "planner_bounds", "run_simulation"]

from planner.defaults import SIMULATION_REFITS as REFITS
from planner.defaults import SIMULATION_TRAIN_FRACTION as TRAIN_FRACTION


def run_simulation(
    series: list[Series],
    cadence: float | str,
    *,
    quantile: float = 0.95,
    train_fraction: float = TRAIN_FRACTION,
    refits: int = REFITS,
    min_margin: float = 0.0,
    bounds: list[Any] | None = None,
    replay: Replay | None = None,
) -> SimulationResult:
    """Planner's causal bounds (unless given), then the four policies on the same part
    (``replay``: what :func:`load_series` kept, carried into the result)."""
    from planner.planning.simulate import simulate, split_time

    start = split_time(series, train_fraction)
    if bounds is None:
        bounds = planner_bounds(series, start, quantile=quantile, refits=refits)
    result = simulate(series, cadence, bounds=bounds, simulated_from=start, min_margin=min_margin)
    return replace(result, replay=replay) if replay is not None else result


def load_series(
    store: HistoryStore, pipeline: str, by: str = "run", definition: Pipeline | None = None
) -> tuple[list[Series], Replay]:
    """The recorded series of ``pipeline`` to replay, and what was kept and left out.

    ``definition``: the pipeline file, when known (it tells a partial last run apart)."""
    from planner.planning.replay import replay_series
    from planner.service.views import run_kinds

    frame = store.attempts_frame(pipeline=pipeline)
    kinds = run_kinds(store.list_runs(pipeline), definition)
    return replay_series(frame, by, kinds)


def planner_bounds(
    series: list[Series], start: float, *, quantile: float = 0.95, refits: int = REFITS
) -> list[Any]:
    """Per series, the bound planner issues at each run's start (NaN before ``start``)."""
    from planner.learning.online import causal_bounds
    from planner.planning.simulate import occurrence_frame, split_bounds

    frame = occurrence_frame(series)
    return split_bounds(series, causal_bounds(frame, start, quantile=quantile, refits=refits))
