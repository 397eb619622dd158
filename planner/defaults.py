"""The one home for planner's default values: plain constants, no imports.

A pipeline file that leaves a key out gets the value here, and code that needs the same
default (the predictor, the monitor, the runner) reads it from here rather than repeating
the literal. Fractions are plain floats; durations are float seconds (names end in ``_S``).
"""

__all__ = [
    "ALERTS_LOG",
    "ALERT_CRITICAL",
    "ALERT_DELIVERY_GRACE_S",
    "ALERT_DRIFT_COVERAGE",
    "ALERT_DRIFT_MDAPE",
    "ALERT_MIN_EXCESS_S",
    "ALERT_SINK_MIN_LEVEL",
    "ALERT_STUCK",
    "ALERT_WARNING",
    "AUTO_TIMEOUT_FACTOR",
    "AUTO_TIMEOUT_FLOOR_S",
    "COMMAND_SINK_TIMEOUT_S",
    "DAEMON_STOP_GRACE_S",
    "DEFAULT_TASK_S",
    "DEFER_POLL_S",
    "DELIVERY_BACKOFF_BASE_S",
    "DELIVERY_BACKOFF_CAP_S",
    "EMAIL_SINK_TIMEOUT_S",
    "LEADER_TTL_S",
    "LEASE_TTL_S",
    "MIN_MARGIN",
    "MISFIRE_GRACE_S",
    "QUANTILE",
    "REFUSED_RETRY_S",
    "RETRAIN_CRON",
    "STATE_DIR",
    "WEBHOOK_SINK_TIMEOUT_S",
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

ALERT_MIN_EXCESS_S = 1.0
"""A task alert also needs its elapsed time past the threshold by at least this many
seconds, so sub-second jitter never pages anyone (``alerts.min_excess``)."""

ALERT_DRIFT_MDAPE = 0.5
"""A ``model_drift`` alert fires when the recent median absolute percentage error of the
predictions (0.5 = 50 %) goes above this (``alerts.drift_mdape``)."""

ALERT_DRIFT_COVERAGE = 0.1
"""A ``model_drift`` alert fires when the recent share of tasks that finished within
their bound falls more than this below the target quantile, e.g. under 0.85 for 0.95
(``alerts.drift_coverage``)."""

ALERT_SINK_MIN_LEVEL = "warning"
"""The lowest alert level a sink is sent (``alerts.sinks[].min_level``)."""

ALERTS_LOG = "alerts.log"
"""The always-on log sink's file, in the state dir (``alerts.sinks[].path`` overrides)."""

ALERT_DELIVERY_GRACE_S = 10.0
"""Seconds the deliveries still pending get when a run ends, before the process exits."""

DELIVERY_BACKOFF_BASE_S = 1.0
"""First wait before a failed delivery is tried again; it doubles on each failure."""

DELIVERY_BACKOFF_CAP_S = 60.0
"""Longest wait between two tries of a failing delivery."""

WEBHOOK_SINK_TIMEOUT_S = 5.0
"""Seconds a webhook POST may take (``alerts.sinks[].timeout``)."""

EMAIL_SINK_TIMEOUT_S = 10.0
"""Seconds an SMTP exchange may take, per network operation (``alerts.sinks[].timeout``)."""

COMMAND_SINK_TIMEOUT_S = 10.0
"""Seconds an alert command may run before it is killed (``alerts.sinks[].timeout``)."""

PRESSURE_THRESHOLD = 0.8
"""Share of the system's memory in use above which a run with ``memory_pressure`` starts
no new task (``memory_pressure.threshold``)."""

PRESSURE_CHECK_EVERY_S = 1.0
"""Seconds between two readings of the system's memory in use
(``memory_pressure.check_every``)."""

PRESSURE_MAX_PAUSE_S = 300.0
"""Seconds a memory pause may last with no task running before one task starts anyway
(``memory_pressure.max_pause``)."""

PRESSURE_CLEANUP_TIMEOUT_S = 60.0
"""Seconds a pressure episode's ``cleanup_command`` may run before its tree is killed
(``memory_pressure.cleanup_timeout``)."""

__all__ += [
    "PRESSURE_CHECK_EVERY_S",
    "PRESSURE_CLEANUP_TIMEOUT_S",
    "PRESSURE_MAX_PAUSE_S",
    "PRESSURE_THRESHOLD",
]

LEADER_TTL_S = 30.0
"""Seconds a daemon's leadership of a pipeline lasts without a heartbeat (it beats every
third of that): another daemon takes the pipeline over this long after the leader died."""

MISFIRE_GRACE_S = 300.0
"""A daemon's start of a ``policy: fixed`` pipeline later than this (the daemon was down,
the machine asleep, the previous run still going) is skipped to the next cadence or cron
time, as cron would; a late predicted start runs at once."""

DEFER_POLL_S = 30.0
"""While a run of the pipeline started elsewhere is active, the daemon looks again this
often (or at the cadence, if shorter)."""

REFUSED_RETRY_S = 60.0
"""After a start that did not run (bad file, a crash before any task), the daemon tries
again after the cadence, or this many seconds without one."""

DAEMON_STOP_GRACE_S = 60.0
"""On SIGTERM, how long the daemon waits for its running runs before it leaves them to
their leases and exits."""

RETRAIN_CRON = "0 3 * * *"
"""When the daemon retrains the models of the pipelines it leads (crontab, its timezone)."""
