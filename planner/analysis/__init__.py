"""The analysts' API: the history as pandas DataFrames, and the figures that read it.

A front end on the service layer, like the command line and the daemon (it imports
:mod:`planner.service`, the history, planning, learning and config, never another front
end). Every loader takes a *source*: a history URL, an open
:class:`~planner.history.HistoryStore`, or a :class:`~planner.service.Instance`; every
frame documents its columns (name, dtype, unit, meaning) in its loader's docstring.

- :mod:`planner.analysis.history`: open a history (or the demo's, made if missing) and
  load attempts, runs, stored plans and their tasks, alerts and the daemon's decisions;
- :mod:`planner.analysis.trends`: duration trends per step, slow accounts, collisions;
- :mod:`planner.analysis.gantt`: one run's attempts on their slots, against its plan;
- :mod:`planner.analysis.capacity`: the run at other concurrencies and quantities, and
  what fits a cadence;
- :mod:`planner.analysis.quality`: predicted against actual with the bound, coverage over
  time, the model against the baselines on a time-ordered holdout, feature importance;
- :mod:`planner.analysis.traces`: import a real trace and reproduce the README's table.

Every public name is also here: ``from planner import analysis; analysis.runs(url)``.

matplotlib is imported by the plot functions only (the Agg backend when there is no
display); each returns its :class:`~matplotlib.figure.Figure` and never shows it.
"""

from __future__ import annotations

from planner.analysis.capacity import (
    OVERVIEW_COLUMNS,
    WHAT_IF_COLUMNS,
    CadenceFit,
    PipelineRef,
    cadence_overview,
    concurrency_what_if,
    fits_cadence,
    plan_advice,
    plot_what_if,
    quantity_what_if,
)
from planner.analysis.gantt import (
    GANTT_COLUMNS,
    assign_slots,
    plot_gantt,
    run_gantt,
)
from planner.analysis.history import (
    ALERT_COLUMNS,
    ATTEMPT_COLUMNS,
    DECISION_COLUMNS,
    PLAN_COLUMNS,
    PLAN_TASK_COLUMNS,
    RUN_COLUMNS,
    Source,
    alerts,
    attempts,
    decisions,
    demo_history,
    demo_pipeline_file,
    open_history,
    plan_tasks,
    plans,
    runs,
    store_of,
)
from planner.analysis.quality import (
    METRICS,
    PLANNED_COLUMNS,
    HoldoutComparison,
    coverage_over_time,
    holdout_comparison,
    permutation_importance,
    plan_quality,
    planned_vs_actual,
    plot_coverage,
    plot_error_per_step,
    plot_importance,
    plot_predicted_vs_actual,
)
from planner.analysis.traces import (
    JULIA_CI_MAPPING,
    JULIA_CI_TRACE,
    KTH_TRACE,
    TABLE_COLUMNS,
    evaluation_table,
    import_trace,
    shared_data_dir,
)
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

__all__ = [
    "ALERT_COLUMNS",
    "ATTEMPT_COLUMNS",
    "COLLISION_COLUMNS",
    "DECISION_COLUMNS",
    "GANTT_COLUMNS",
    "JULIA_CI_MAPPING",
    "JULIA_CI_TRACE",
    "KTH_TRACE",
    "METRICS",
    "OVERVIEW_COLUMNS",
    "PLANNED_COLUMNS",
    "PLAN_COLUMNS",
    "PLAN_TASK_COLUMNS",
    "RUN_COLUMNS",
    "SLOW_ACCOUNT_COLUMNS",
    "STEP_SUMMARY_COLUMNS",
    "TABLE_COLUMNS",
    "TREND_COLUMNS",
    "WHAT_IF_COLUMNS",
    "CadenceFit",
    "HoldoutComparison",
    "PipelineRef",
    "Source",
    "alerts",
    "assign_slots",
    "attempts",
    "cadence_overview",
    "collisions",
    "concurrency_what_if",
    "coverage_over_time",
    "decisions",
    "demo_history",
    "demo_pipeline_file",
    "evaluation_table",
    "fits_cadence",
    "holdout_comparison",
    "import_trace",
    "open_history",
    "permutation_importance",
    "plan_advice",
    "plan_quality",
    "plan_tasks",
    "planned_vs_actual",
    "plans",
    "plot_collisions",
    "plot_coverage",
    "plot_error_per_step",
    "plot_gantt",
    "plot_importance",
    "plot_predicted_vs_actual",
    "plot_slow_accounts",
    "plot_step_trends",
    "plot_what_if",
    "quantity_what_if",
    "run_gantt",
    "runs",
    "shared_data_dir",
    "slow_accounts",
    "step_summary",
    "step_trends",
    "store_of",
]
