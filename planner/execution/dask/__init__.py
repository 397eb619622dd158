"""Tasks on a Dask distributed cluster, behind the :class:`~planner.execution.Executor`
interface (``pip install -e '.[dask]'``).

Nothing here imports dask until a Dask executor is built: :mod:`.executor` (the
scheduling host's side), :mod:`.worker` (what runs in a worker process), :mod:`.claims`
(a scheduler plugin: each task runs at most once) and ``watchdog.py`` (a helper process
per worker that kills its tasks' process groups when the worker dies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planner.execution.dask.executor import DaskExecutor

__all__ = ["DaskExecutor"]


def __getattr__(name: str) -> Any:
    if name == "DaskExecutor":
        from planner.execution.dask.executor import DaskExecutor

        return DaskExecutor
    raise AttributeError(name)
