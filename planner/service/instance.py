"""The handle every front end holds: the history, the models, the clock and the machine.

In the spirit of Dagster's ``DagsterInstance``: the CLI, the daemon, the dashboard and the
notebooks open one :class:`Instance` and pass it to the use cases of
:mod:`planner.service`; tests build one with a :class:`~planner.clock.FakeClock` and a
:class:`~planner.service.machine.FixedMachine` and the same arguments otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from planner.clock import SYSTEM_CLOCK, Clock
from planner.service.locations import Target, pipeline_locations, resolve_target
from planner.service.machine import LocalMachine, MachineProbe

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.history import HistoryStore
    from planner.learning.registry import Registry

__all__ = ["Instance"]


class Instance:
    """A history store, a model registry folder, a clock and a machine probe.

    Opening the store creates the database when it does not exist; front ends that must
    only read check :func:`planner.service.locations.history_exists` first.
    """

    def __init__(
        self,
        store: HistoryStore,
        models_dir: Path,
        *,
        clock: Clock = SYSTEM_CLOCK,
        machine: MachineProbe | None = None,
    ) -> None:
        self.store = store
        self.models_dir = Path(models_dir)
        self.clock = clock
        self.machine: MachineProbe = machine or LocalMachine()

    @classmethod
    def open(
        cls,
        target: Target,
        *,
        clock: Clock = SYSTEM_CLOCK,
        machine: MachineProbe | None = None,
    ) -> Instance:
        """The instance of a resolved target (see :func:`resolve_target`)."""
        from planner.history import HistoryStore

        store = HistoryStore(target.db_url, clock=clock)
        return cls(store, target.models_dir, clock=clock, machine=machine)

    @classmethod
    def for_pipeline(
        cls,
        pipeline: Pipeline,
        *,
        db: str | None = None,
        models: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
        machine: MachineProbe | None = None,
    ) -> Instance:
        """The instance of a loaded pipeline: its history and ``<state_dir>/models``
        unless ``db``/``models`` (or ``$PLANNER_DB``/``$PLANNER_MODELS``) say otherwise."""
        return cls.open(
            pipeline_locations(pipeline, db=db, models=models), clock=clock, machine=machine
        )

    @classmethod
    def for_name(
        cls,
        value: str | None,
        *,
        db: str | None = None,
        models: Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> tuple[Instance, Target]:
        """The instance for a ``--pipeline`` value (a file, a name, or nothing)."""
        target = resolve_target(value, db=db, models=models)
        return cls.open(target, clock=clock), target

    @property
    def url(self) -> str:
        """The history's URL, password hidden."""
        return self.store.url

    def registry(self) -> Registry:
        """The model registry, checked against the digests recorded in the history."""
        from planner.learning.registry import Registry

        return Registry(self.models_dir, ledger=self.store, clock=self.clock)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
