"""The scheduler daemon: a thin shell (APScheduler timers, child processes, signals)
around the decisions of :mod:`planner.service.scheduling`.

``core`` leads pipelines and starts their runs, ``entries`` holds what it serves and its
settings, ``timer`` is the APScheduler shell, ``children`` starts ``planner run`` /
``planner train`` processes, ``reports`` and ``logs`` say each decision in one line, store
it and alert, ``main`` is the process's lifetime (``planner daemon``).
"""

from planner.daemon.core import Daemon
from planner.daemon.entries import DaemonSettings
from planner.daemon.main import DaemonOptions, serve

__all__ = ["Daemon", "DaemonOptions", "DaemonSettings", "serve"]
