"""Where a pipeline's history lives: ``--db``, else ``$PLANNER_DB``, else the state dir.

Kept free of heavy imports; every front end finds its history through this rule (see
:mod:`planner.service.locations`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_DB_NAME", "history_url"]

DEFAULT_DB_NAME = "history.db"


def history_url(explicit: str | None, state_dir: Path | None = None) -> str:
    """The history URL: ``explicit``, else ``$PLANNER_DB``, else ``<state_dir>/history.db``."""
    if explicit:
        return explicit
    env = os.environ.get("PLANNER_DB")
    if env:
        return env
    folder = (state_dir or Path(".planner")).expanduser().resolve()
    return f"sqlite:///{folder / DEFAULT_DB_NAME}"
