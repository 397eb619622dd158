"""Where a front end's history and models are, and what its ``--pipeline`` names.

One rule for every command:

- the history: ``--db``, else ``$PLANNER_DB``, else ``<state_dir>/history.db``;
- the models: ``--models``, else ``$PLANNER_MODELS``, else ``<state_dir>/models``, so a
  pipeline's models live with its history wherever the command is run from;
- ``--pipeline P``: a pipeline file (by its suffix; then its name and state dir are
  used) or a pipeline name in the history (then the default state dir ``./.planner``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from planner.defaults import STATE_DIR
from planner.history.location import history_url

if TYPE_CHECKING:
    from planner.config import Pipeline

__all__ = [
    "DEFAULT_STATE_DIR",
    "MODELS_DIR_NAME",
    "Target",
    "history_exists",
    "is_pipeline_file",
    "models_dir",
    "pipeline_locations",
    "resolve_target",
]

#: The state dir of a command that names no pipeline file (a pipeline file's default too).
DEFAULT_STATE_DIR = Path(STATE_DIR)
MODELS_DIR_NAME = "models"
_PIPELINE_SUFFIXES = (".yaml", ".yml", ".json", ".toml")


def models_dir(explicit: Path | None, state_dir: Path | None = None) -> Path:
    """The model registry: ``explicit``, else ``$PLANNER_MODELS``, else ``<state_dir>/models``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("PLANNER_MODELS")
    if env:
        return Path(env)
    return (state_dir or DEFAULT_STATE_DIR) / MODELS_DIR_NAME


def history_exists(url: str) -> bool:
    """False only for a SQLite file that does not exist yet (opening would create it)."""
    if not url.startswith("sqlite:///"):
        return True
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return path in ("", ":memory:") or Path(path).exists()


@dataclass(frozen=True)
class Target:
    """What a command's ``--pipeline`` resolved to, and where its history and models are."""

    name: str | None
    pipeline: Pipeline | None
    db_url: str
    models_dir: Path

    @property
    def quantile(self) -> float | None:
        return self.pipeline.schedule.quantile if self.pipeline is not None else None


def is_pipeline_file(value: str) -> bool:
    """Whether ``value`` names a pipeline file (by its suffix) rather than a pipeline."""
    return value.lower().endswith(_PIPELINE_SUFFIXES)


def resolve_target(value: str | None, *, db: str | None, models: Path | None = None) -> Target:
    """``--pipeline`` (a file, a name, or nothing) with the history and models it uses.

    A file is loaded (``ConfigError``/``InputFileError`` when it is bad or missing)."""
    if value and is_pipeline_file(value):
        from planner.config import load_pipeline

        pipeline = load_pipeline(value)
        return Target(
            name=pipeline.name,
            pipeline=pipeline,
            db_url=history_url(db, pipeline.state_dir),
            models_dir=models_dir(models, pipeline.state_dir),
        )
    return Target(
        name=value or None,
        pipeline=None,
        db_url=history_url(db, None),
        models_dir=models_dir(models, None),
    )


def pipeline_locations(pipeline: Pipeline, *, db: str | None, models: Path | None) -> Target:
    """The history and models of a loaded pipeline."""
    return Target(
        name=pipeline.name,
        pipeline=pipeline,
        db_url=history_url(db, pipeline.state_dir),
        models_dir=models_dir(models, pipeline.state_dir),
    )
