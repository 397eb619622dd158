"""The use cases every front end shares (CLI now; daemon, dashboard and notebooks next).

Front ends open an :class:`~planner.service.instance.Instance` (history, models, clock,
machine probe) and call the use cases; they never import each other, hold no SQL and no
planning arithmetic. One module per use case:

- :mod:`planner.service.planning`: plan a run (and store a plan);
- :mod:`planner.service.running`: run a pipeline by its plan;
- :mod:`planner.service.training`: train and list models;
- :mod:`planner.service.views`: the runs list and one run, as documents.

Importing this package is cheap; each use case imports what it needs when called.
"""

from planner.service.instance import Instance
from planner.service.locations import Target, history_exists, models_dir, resolve_target
from planner.service.machine import FixedMachine, LocalMachine, MachineProbe, MachineState

__all__ = [
    "FixedMachine",
    "Instance",
    "LocalMachine",
    "MachineProbe",
    "MachineState",
    "Target",
    "history_exists",
    "models_dir",
    "resolve_target",
]
