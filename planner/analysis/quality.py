"""How good are the predictions? The runs' own plans against what the tasks took, and the
model against the baselines on a time-ordered holdout.

Two views, both from the history:

- **what the runs were told** (:func:`planned_vs_actual`): each task of a run that stored
  its plan, with the plan's prediction and bound and the duration of the attempt that
  succeeded (the rows :mod:`planner.monitoring.drift` judges drift on), and
  :func:`coverage_over_time`, the rolling share of tasks that finished within their bound
  against the quantile the bounds were calibrated for;
- **what training measures** (:func:`holdout_comparison`): the evaluation ``planner
  train`` runs (:func:`planner.learning.training.holdout_evaluation`), as tables, and
  :func:`permutation_importance` of the features of the model fitted for that holdout,
  measured on its test part.

Plots take those frames and return a matplotlib ``Figure`` (made without pyplot: nothing
is shown, no backend is needed; in Jupyter, ``%matplotlib inline`` displays it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from planner.analysis.columns import TIME, Column, documented, typed_frame
from planner.analysis.figures import new_figure, no_data, utc_naive
from planner.analysis.history import Source, store_of
from planner.defaults import HOLDOUT, QUANTILE
from planner.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from planner.learning.evaluation import Evaluation

__all__ = [
    "METRICS",
    "PLANNED_COLUMNS",
    "HoldoutComparison",
    "coverage_over_time",
    "holdout_comparison",
    "permutation_importance",
    "plan_quality",
    "planned_vs_actual",
    "plot_coverage",
    "plot_error_per_step",
    "plot_importance",
    "plot_predicted_vs_actual",
]

#: The columns of :func:`planned_vs_actual`.
PLANNED_COLUMNS: tuple[Column, ...] = (
    Column("run_id", "string", "", "the run that stored the plan"),
    Column("step", "string", "", "step id"),
    Column("account", "string", "", "account (<NA>: a step not per account)"),
    Column("estimate", "string", "", "where the plan's estimate came from: model, last2:..."),
    Column("started_at", TIME, "", "when the attempt that succeeded started"),
    Column("finished_at", TIME, "", "when it ended"),
    Column("predicted_s", "float64", "s", "the plan's prediction of the task"),
    Column("bound_s", "float64", "s", "the plan's upper bound of the task"),
    Column("duration_s", "float64", "s", "what the task took"),
    Column("within_bound", "bool", "", "duration_s <= bound_s"),
    Column("ape", "float64", "", "|predicted_s - duration_s| / duration_s"),
)
#: The metrics of a method on the holdout (the keys of ``planner train --json``), and n.
METRICS = ("mae_s", "mdape", "mean_abs_log", "overrun", "median_bound_ratio", "n")


# -- the runs' own plans ---------------------------------------------------------------


@documented(PLANNED_COLUMNS)
def planned_vs_actual(source: Source, pipeline: str, *, runs: int | None = None) -> pd.DataFrame:
    """One row per task that succeeded in a run of ``pipeline`` that stored its plan (the
    last ``runs`` such runs; ``None``: all), by finish time: the plan's prediction and
    bound against what it took. Tasks planned at the default (no history) are left out, as
    the drift check leaves them out (:func:`planner.monitoring.drift.planned_attempts`)."""
    from planner.monitoring.drift import planned_attempts

    with store_of(source) as store:
        tasks = planned_attempts(store, pipeline, runs=runs)
    tasks.sort(key=lambda t: (t.finished_at or t.started_at, t.started_at))
    rows = [
        {
            "run_id": t.run_id,
            "step": t.step,
            "account": t.account,
            "estimate": t.source,
            "started_at": t.started_at,
            "finished_at": t.finished_at,
            "predicted_s": t.predicted_s,
            "bound_s": t.bound_s,
            "duration_s": t.actual_s,
            "within_bound": t.actual_s <= t.bound_s,
            "ape": abs(t.predicted_s - t.actual_s) / t.actual_s,
        }
        for t in tasks
    ]
    return typed_frame(rows, PLANNED_COLUMNS)


def plan_quality(frame: pd.DataFrame) -> dict[str, Any]:
    """The drift check's figures of a :func:`planned_vs_actual` frame: ``runs``, ``tasks``,
    ``mdape`` and ``coverage`` (:func:`planner.monitoring.drift.prediction_quality`;
    None when there is no task)."""
    from planner.monitoring.drift import prediction_quality

    columns = ("run_id", "predicted_s", "bound_s", "duration_s")
    quality = prediction_quality(frame[list(columns)].itertuples(index=False, name=None))
    return {k: getattr(quality, k) for k in ("runs", "tasks", "mdape", "coverage")}


def coverage_over_time(
    frame: pd.DataFrame, window: int | str = 50, *, target: float = QUANTILE
) -> pd.DataFrame:
    """The share of tasks that finished within their bound, over time.

    ``frame``: :func:`planned_vs_actual`. ``window``: the last ``window`` tasks (an int)
    or a time span (``"7D"``, ``"12h"``) before each task's finish. One row per task, by
    finish time: ``finished_at``, ``run_id``, ``step``, ``within_bound``, ``coverage``
    (the share within bound over the window ending at this task), ``tasks`` (how many the
    window holds), ``cumulative`` (the share over every task so far) and ``target`` (the
    quantile the bounds were calibrated for: ``schedule.quantile``, 0.95 by default)."""
    import numpy as np
    import pandas as pd

    if isinstance(window, int) and window < 1:
        raise ValueError(f"window must be >= 1 task, got {window!r}")
    ordered = frame.sort_values("finished_at", kind="stable").reset_index(drop=True)
    hit = ordered["within_bound"].astype("float64")
    if isinstance(window, int):
        rolling = hit.rolling(window, min_periods=1)
    else:
        rolling = hit.set_axis(pd.DatetimeIndex(ordered["finished_at"])).rolling(window)
    return pd.DataFrame(
        {
            "finished_at": ordered["finished_at"],
            "run_id": ordered["run_id"],
            "step": ordered["step"],
            "within_bound": ordered["within_bound"].astype(bool),
            "coverage": rolling.mean().to_numpy(dtype="float64"),
            "tasks": rolling.count().to_numpy(dtype="int64"),
            "cumulative": hit.expanding().mean().to_numpy(dtype="float64"),
            "target": np.full(len(ordered), float(target)),
        }
    )


# -- the holdout of training -----------------------------------------------------------


@dataclass(frozen=True)
class HoldoutComparison:
    """The model against the baselines on a time-ordered holdout (``planner train``'s).

    ``table``: one row per method (index ``method``: ``model``, ``last2``, ``last10``,
    ``last10_x1.2``), columns :data:`METRICS` (rates as fractions, MAE in seconds);
    ``per_step``: one row per (step, method), the same columns; ``evaluation``: what
    :func:`planner.learning.training.holdout_evaluation` returned (the fitted model, every
    test prediction, the halves)."""

    pipeline: str
    table: pd.DataFrame
    per_step: pd.DataFrame
    evaluation: Evaluation

    @property
    def variant(self) -> str:
        """The model's variant on this holdout (``residual``, ``ensemble``, ``last2``...)."""
        return self.evaluation.variant


def _attempts(source: Source, pipeline: str) -> pd.DataFrame:
    """The pipeline's attempts, as ``planner train`` reads them."""
    with store_of(source) as store:
        frame = store.attempts_frame(pipeline)
        url = store.url
    if frame.empty:
        raise UsageError(f"pipeline {pipeline!r}", f"no attempts in the history {url}")
    return frame.reset_index(drop=True)


def _evaluation(frame: pd.DataFrame, pipeline: str, holdout: float, quantile: float) -> Evaluation:
    from planner.learning.training import holdout_evaluation

    if not 0.0 < holdout < 1.0:
        raise UsageError("holdout", f"must be a fraction in (0, 1), got {holdout}")
    try:
        return holdout_evaluation(frame, holdout=holdout, quantile=quantile)
    except ValueError as exc:
        raise UsageError(f"pipeline {pipeline!r}", str(exc)) from None


def holdout_comparison(
    source: Source,
    pipeline: str,
    holdout: float = HOLDOUT,
    *,
    quantile: float = QUANTILE,
) -> HoldoutComparison:
    """The evaluation of ``planner train --holdout`` on ``pipeline``'s attempts: the
    last ``holdout`` of them by start time, each predicted at its start from what had
    finished by then, the bounds adapted online (see :mod:`planner.learning.evaluation`)."""
    import pandas as pd

    ev = _evaluation(_attempts(source, pipeline), pipeline, holdout, quantile)
    table = pd.DataFrame.from_dict(ev.methods, orient="index")[list(METRICS)]
    table.index.name = "method"
    rows = [
        {"step": step, "method": method, **scores}
        for step, methods in ev.per_step.items()
        for method, scores in methods.items()
    ]
    per_step = pd.DataFrame(rows, columns=["step", "method", *METRICS])
    table["n"] = table["n"].astype("int64")
    per_step["n"] = per_step["n"].astype("int64")
    return HoldoutComparison(pipeline=pipeline, table=table, per_step=per_step, evaluation=ev)


def _neg_mean_abs_log(estimator: Any, X: pd.DataFrame, y: np.ndarray) -> float:
    """The scorer: minus the mean |log(predicted / actual)| (higher is better)."""
    import numpy as np

    predicted = np.asarray(estimator.predict(X), dtype="float64")
    return -float(np.mean(np.abs(np.log(predicted / y))))


def permutation_importance(
    source: Source,
    pipeline: str,
    holdout: float = HOLDOUT,
    n_repeats: int = 5,
    *,
    quantile: float = QUANTILE,
    random_state: int = 0,
) -> pd.DataFrame:
    """How much each feature matters to the model of :func:`holdout_comparison`: each
    feature column of the test part is shuffled ``n_repeats`` times
    (:func:`sklearn.inspection.permutation_importance`, one job) and the model's mean
    |log(predicted / actual)| measured again.

    One row per feature (the leak-free columns of
    :func:`planner.learning.features.attempt_features`), most important first:
    ``feature``, ``importance`` (mean increase of the error when shuffled; about 0: not
    used), ``std`` (over the repeats) and ``in_trees`` (whether the boosted trees read it;
    the grouped baselines inside the model read the ``h.*.mean*``/``count``/``work*``
    columns)."""
    import numpy as np
    import pandas as pd
    from sklearn.inspection import permutation_importance as permute

    from planner.learning.evaluation import holdout_features

    frame = _attempts(source, pipeline)
    ev = _evaluation(frame, pipeline, holdout, quantile)
    model = ev.model
    assert model is not None  # evaluate always fits one
    split = holdout_features(frame, holdout)
    X = split.features.loc[split.test]
    y = split.actual[split.test]
    result = permute(
        model,
        X,
        y,
        scoring=_neg_mean_abs_log,
        n_repeats=n_repeats,
        n_jobs=1,
        random_state=random_state,
    )
    trees = set() if ev.baselines_only else set(model.feature_names_)
    out = pd.DataFrame(
        {
            "feature": [str(c) for c in X.columns],
            "importance": np.asarray(result["importances_mean"], dtype="float64"),
            "std": np.asarray(result["importances_std"], dtype="float64"),
        }
    )
    out["in_trees"] = out["feature"].isin(trees)
    out = out.sort_values(["importance", "feature"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)


# -- plots -----------------------------------------------------------------------------


def _log_seconds(ax: Axes) -> None:
    """Both axes on a log scale, labelled at 1, 2 and 5 x 10^k seconds."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, scale in ((ax.xaxis, ax.set_xscale), (ax.yaxis, ax.set_yscale)):
        scale("log")
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def plot_predicted_vs_actual(frame: pd.DataFrame) -> Figure:
    """Log-log scatter of each task's prediction (y) against what it took (x)
    (:func:`planned_vs_actual`), its bound drawn as a segment up from the prediction: on
    the diagonal = exact, above = predicted too long; a red point overran its bound (the
    segment's end is below the diagonal)."""
    import numpy as np

    fig, ax = new_figure(6.5, 5.5)
    if frame.empty:
        no_data(ax, "no task of a run that stored its plan")
        return fig
    actual = frame["duration_s"].to_numpy(dtype="float64")
    predicted = frame["predicted_s"].to_numpy(dtype="float64")
    bound = frame["bound_s"].to_numpy(dtype="float64")
    inside = frame["within_bound"].to_numpy(dtype=bool)
    ax.vlines(actual, predicted, bound, colors="tab:gray", alpha=0.35, linewidth=1)
    ax.scatter(actual[inside], predicted[inside], s=14, label="within bound")
    ax.scatter(actual[~inside], predicted[~inside], s=18, color="tab:red", label="over bound")
    ax.scatter(actual, bound, marker="_", s=30, color="tab:gray", label="bound")
    values = np.concatenate([actual, predicted, bound])
    low, high = float(values[values > 0].min()) / 1.2, float(values.max()) * 1.2
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="exact")
    _log_seconds(ax)
    ax.set_xlabel("actual duration (s)")
    ax.set_ylabel("predicted (s), bound above")
    quality = plan_quality(frame)
    ax.set_title(
        f"{quality['tasks']} tasks of {quality['runs']} runs: MdAPE "
        f"{quality['mdape']:.0%}, {quality['coverage']:.0%} within bound"
    )
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_coverage(coverage: pd.DataFrame) -> Figure:
    """The rolling and cumulative shares within bound (:func:`coverage_over_time`) over
    finish time, against the target: below the dashed line, the bounds overran more often
    than they were calibrated to."""
    fig, ax = new_figure(9.0, 4.0)
    if coverage.empty:
        no_data(ax, "no task of a run that stored its plan")
        return fig
    x = utc_naive(coverage["finished_at"])
    ax.plot(x, coverage["coverage"], marker=".", label="rolling")
    ax.plot(x, coverage["cumulative"], color="tab:gray", label="cumulative")
    target = float(coverage["target"].iloc[0])
    ax.axhline(target, color="tab:red", linestyle="--", label=f"target {target:.0%}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("share of tasks within their bound")
    ax.set_xlabel("task finished at (UTC)")
    ax.legend(loc="lower left", fontsize="small")
    return fig


def plot_error_per_step(
    comparison: HoldoutComparison, metric: str = "mdape", *, top: int = 15
) -> Figure:
    """Grouped bars of ``metric`` per step and method on the holdout (the ``top`` steps
    with most test attempts, most first): where the model beats the baselines, and where
    it does not."""
    import numpy as np

    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    data = comparison.per_step
    model = data[data["method"] == "model"].sort_values(["n", "step"], ascending=[False, True])
    steps = model["step"].tolist()[:top]
    methods = [m for m in ("model", "last2", "last10", "last10_x1.2") if m in set(data["method"])]
    fig, ax = new_figure(8.0, 1.2 + 0.13 * max(len(steps), 1) * max(len(methods), 1))
    height = 0.8 / max(len(methods), 1)
    y = np.arange(len(steps))
    table = data.set_index(["step", "method"])[metric]
    for i, method in enumerate(methods):
        values = [float(table.get((step, method), np.nan)) for step in steps]
        ax.barh(y + i * height, values, height=height, label=method)
    ax.set_yticks(y + height * (len(methods) - 1) / 2, labels=steps)
    ax.invert_yaxis()
    ax.set_xlabel(metric + (" (fraction)" if metric in ("mdape", "overrun") else ""))
    ax.set_title(f"{comparison.pipeline}: {metric} per step on the holdout")
    ax.legend(fontsize="small")
    return fig


def plot_importance(importance: pd.DataFrame, *, top: int = 15) -> Figure:
    """Horizontal bars of the ``top`` features by permutation importance, with their
    spread over the repeats (:func:`permutation_importance`); features whose shuffling
    changed nothing are left out (the title says how many)."""
    import numpy as np

    moved = importance[(importance["importance"] != 0) | (importance["std"] != 0)]
    shown = moved.head(top)
    fig, ax = new_figure(7.5, 1.2 + 0.3 * max(len(shown), 1))
    unmoved = len(importance) - len(moved)
    note = f"\n({unmoved} features whose shuffling changed nothing not shown)" if unmoved else ""
    if shown.empty:
        no_data(ax, "no feature changed the error when shuffled")
        return fig
    y = np.arange(len(shown))
    colors = ["tab:blue" if t else "tab:gray" for t in shown["in_trees"]]
    ax.barh(y, shown["importance"], xerr=shown["std"], color=colors)
    ax.set_yticks(y, labels=shown["feature"].tolist())
    ax.invert_yaxis()
    ax.set_xlabel("increase of mean |log(predicted / actual)| when shuffled")
    ax.set_title("blue: read by the trees; gray: by the baselines only" + note, fontsize="medium")
    return fig
