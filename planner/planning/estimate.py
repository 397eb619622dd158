"""The run estimate: predicted total along the critical path, and a calibrated bound.

The predicted run duration comes from scheduling every task's prediction on the shared
slots (:func:`planner.planning.makespan.schedule_graph`); the critical path is the chain of
steps that sets it (:func:`planner.graph.critical_path` over each step's span from ready to
done, which makes the path's length equal to the scheduled makespan).

Sums (or schedules) of per-task quantiles are not a calibrated bound for the run. The run
bound is ``predicted x factor`` where ``factor`` is the split-conformal quantile of
``actual / predicted`` over past runs that had a stored plan: with ``n`` ratios, the
``ceil((n + 1) q)``-th smallest, which covers a new run with probability at least ``q``
when runs are exchangeable. With fewer than :data:`MIN_CALIBRATION_RUNS` such runs the
stated fallback applies: ``max(schedule of the task bounds, FALLBACK_FACTOR x predicted)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from planner.graph import critical_path
from planner.planning.makespan import GraphSchedule, schedule_graph
from planner.planning.model import PastRun, RunEstimate

__all__ = [
    "FALLBACK_FACTOR",
    "MIN_CALIBRATION_RUNS",
    "calibration_ratios",
    "conformal_factor",
    "estimate_run",
    "run_bound",
]

#: Past runs with a stored plan needed before the run bound is calibrated on them.
MIN_CALIBRATION_RUNS = 10
#: The factor on the prediction used until then (and never less than the task bounds).
FALLBACK_FACTOR = 1.25


def calibration_ratios(past: Sequence[PastRun]) -> list[float]:
    """``actual / predicted`` of past succeeded runs that had a plan with a prediction > 0."""
    ratios = []
    for run in past:
        actual = run.duration_s
        if run.status != "succeeded" or actual is None or not run.predicted_s:
            continue
        if run.predicted_s > 0 and actual >= 0:
            ratios.append(actual / run.predicted_s)
    return ratios


def conformal_factor(ratios: Sequence[float], quantile: float) -> tuple[float, bool]:
    """The split-conformal ``quantile`` of ``ratios`` and whether it carries the guarantee.

    With ``n`` ratios it is the ``ceil((n + 1) q)``-th smallest; when that rank exceeds
    ``n`` the largest ratio is returned and the flag is ``False``.
    """
    if not ratios:
        raise ValueError("no ratios to calibrate on")
    ordered = sorted(ratios)
    rank = math.ceil((len(ordered) + 1) * quantile)
    if rank > len(ordered):
        return ordered[-1], False
    return ordered[max(rank, 1) - 1], True


def run_bound(
    predicted_s: float,
    task_bound_s: float,
    past: Sequence[PastRun],
    quantile: float,
    *,
    min_runs: int = MIN_CALIBRATION_RUNS,
) -> tuple[float, str, int, float]:
    """``(bound_s, rule, calibration runs, factor)`` for a run predicted at ``predicted_s``.

    ``task_bound_s`` is the schedule of the per-task bounds, used only by the fallback.
    The bound is never below the prediction.
    """
    ratios = calibration_ratios(past)
    n = len(ratios)
    if n < min_runs:
        bound = max(task_bound_s, FALLBACK_FACTOR * predicted_s, predicted_s)
        factor = bound / predicted_s if predicted_s > 0 else 1.0
        rule = (
            f"fewer than {min_runs} past runs with a plan ({n}): bound = max(schedule of the "
            f"task bounds, {FALLBACK_FACTOR:g} x predicted)"
        )
        return bound, rule, n, factor
    factor, exact = conformal_factor(ratios, quantile)
    factor = max(1.0, factor)
    if exact:
        rule = (
            f"conformal {quantile:.0%} quantile of actual/predicted over {n} past runs: "
            f"x{factor:.3f}"
        )
    else:
        rule = (
            f"largest actual/predicted of {n} past runs (too few for a {quantile:.0%} "
            f"conformal quantile): x{factor:.3f}"
        )
    return predicted_s * factor, rule, n, factor


def estimate_run(
    deps: Mapping[str, Sequence[str]],
    predicted: Mapping[str, Sequence[float]],
    bounds: Mapping[str, Sequence[float]],
    slots: int,
    *,
    past: Sequence[PastRun],
    quantile: float,
) -> tuple[RunEstimate, GraphSchedule, GraphSchedule]:
    """The run estimate, the schedule of the predictions and the schedule of the task bounds.

    ``deps``: ``{step: [steps it depends on]}``; ``predicted`` / ``bounds``: per step, the
    task durations in the same order.
    """
    sched = schedule_graph(deps, predicted, slots)
    bound_sched = schedule_graph(deps, bounds, slots)
    length, path = critical_path(deps, {s: sched.span(s) for s in deps if s in sched.finish})
    bound, rule, n, factor = run_bound(length, bound_sched.makespan, past, quantile)
    estimate = RunEstimate(
        predicted_s=length,
        bound_s=bound,
        critical_path=tuple(path),
        bound_rule=rule,
        calibration_runs=n,
        factor=factor,
    )
    return estimate, sched, bound_sched
