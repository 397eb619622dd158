"""What each task attempt of a run starts: its command, environment, working folder, log.

Placeholders (``{account}``, ``{quantity}``, ``{step}``, ``{run_id}`` and the step's
params) are filled in; the environment is the runner's, the step's ``env``, and
``PLANNER_RUN_ID``, ``PLANNER_STEP``, ``PLANNER_ACCOUNT``, ``PLANNER_QUANTITY``,
``PLANNER_ATTEMPT`` (a takeover finds a dead run's processes by them). Logs go to
``<state_dir>/logs/<run_id>/<step>[.<account>].<attempt>.log``; a memory-pressure
episode's cleanup command logs to ``cleanup.<episode>.log`` beside them (it runs with the
runner's environment, without the ``PLANNER_`` task variables: it is no task of the run).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from planner.execution.process import Launch, render_command

if TYPE_CHECKING:
    from planner.config.models import Pipeline, Step
    from planner.execution.tasks import TaskKey

__all__ = ["TaskLaunches"]

_TASK_VARIABLES = frozenset(
    ("PLANNER_RUN_ID", "PLANNER_STEP", "PLANNER_ACCOUNT", "PLANNER_QUANTITY", "PLANNER_ATTEMPT")
)


@dataclass(frozen=True)
class TaskLaunches:
    """Builds the :class:`Launch` of each attempt of one run."""

    run_id: str
    logs: Path
    cwd: Path | None
    base_env: Mapping[str, str]

    @classmethod
    def for_run(cls, pipeline: Pipeline, run_id: str) -> TaskLaunches:
        """Logs under the pipeline's state dir; commands run beside the pipeline file
        unless a step says ``cwd``; the environment is this process's, read now."""
        return cls(
            run_id=run_id,
            logs=pipeline.state_dir / "logs" / run_id,
            cwd=pipeline.source.parent if pipeline.source else None,
            base_env=dict(os.environ),
        )

    def launch(self, key: TaskKey, step: Step, attempt: int) -> Launch:
        """Attempt number ``attempt`` of task ``key`` (of ``step``)."""
        values: dict[str, object] = {
            **step.params,
            "account": key.account or "",
            "quantity": step.quantity,
            "step": step.id,
            "run_id": self.run_id,
        }
        env = {
            **self.base_env,
            **step.env,
            "PLANNER_RUN_ID": self.run_id,
            "PLANNER_STEP": step.id,
            "PLANNER_ACCOUNT": key.account or "",
            "PLANNER_QUANTITY": str(step.quantity),
            "PLANNER_ATTEMPT": str(attempt),
        }
        name = _safe(step.id) + (f".{_safe(key.account)}" if key.account is not None else "")
        return Launch(
            command=render_command(step.command, values, shell=step.shell),
            env=env,
            log_path=self.logs / f"{name}.{attempt}.log",
            cwd=step.cwd or self.cwd,
            shell=step.shell,
        )

    def cleanup(self, command: tuple[str, ...], episode: int) -> Launch:
        """The launch of the cleanup command of pressure episode number ``episode``."""
        return Launch(
            command=tuple(command),
            env={k: v for k, v in self.base_env.items() if k not in _TASK_VARIABLES},
            log_path=self.logs / f"cleanup.{episode}.log",
            cwd=self.cwd,
        )


def _safe(name: str) -> str:
    """A name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", name) or "_"
