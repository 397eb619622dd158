"""The one home for planner's default values: plain constants, no imports.

A pipeline file that leaves a key out gets the value here, and code that needs the same
default (the predictor, the monitor, the runner) reads it from here rather than repeating
the literal. Fractions are plain floats; durations are float seconds (names end in ``_S``).
"""

__all__ = [
    "ALERT_CRITICAL",
    "ALERT_STUCK",
    "ALERT_WARNING",
    "AUTO_TIMEOUT_FACTOR",
    "AUTO_TIMEOUT_FLOOR_S",
    "DEFAULT_TASK_S",
    "LEASE_TTL_S",
    "MIN_MARGIN",
    "QUANTILE",
    "STATE_DIR",
]

QUANTILE = 0.95
"""Coverage target of the calibrated upper bound: at most 5 % of tasks overrun it
(``schedule.quantile``)."""

MIN_MARGIN = 0.1
"""Safety margin added on top of the run's upper bound when the interval is predicted:
``interval >= bound x (1 + MIN_MARGIN)`` (``schedule.min_margin``)."""

ALERT_WARNING = 0.8
"""Warning alert when running work reaches this fraction of its upper bound
(``alerts.warning``)."""

ALERT_CRITICAL = 1.0
"""Critical alert when running work reaches this fraction of its upper bound
(``alerts.critical``)."""

ALERT_STUCK = 2.0
"""A task running this many times its upper bound is taken as stuck."""

LEASE_TTL_S = 60.0
"""Seconds a run's lease lasts without a heartbeat (``lease_ttl``)."""

AUTO_TIMEOUT_FACTOR = 3.0
"""``timeout: auto`` is the task's calibrated upper bound times this factor
(``auto_timeout.factor``, at least 1)."""

AUTO_TIMEOUT_FLOOR_S = 10.0
"""``timeout: auto`` is never shorter than this many seconds (``auto_timeout.floor``)."""

DEFAULT_TASK_S = 60.0
"""Seconds assumed for a task with no history at all (no model, no baseline)."""

STATE_DIR = ".planner"
"""Where a pipeline keeps its history, locks and logs, relative to the pipeline file
(``state_dir``)."""

HOLDOUT = 0.3
"""Share of the attempts, the latest by start time, that ``planner train`` tests on."""

SIMULATION_TRAIN_FRACTION = 0.3
"""Share of the occurrences (in start order) that trains planner's model in a replay."""

SIMULATION_REFITS = 4
"""Fits of planner's model along a replay's scored part (a periodic retraining; 1 is the
fast path: about 6 s on the 28,000 KTH jobs, 4 about 30 s)."""
