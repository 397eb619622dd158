"""What the command line prints beside JSON: rich tables and progress displays shared by
several commands (a plan, a run and its attempts, a run's progress, the report, the
scheduler's status). Commands call these; these never import a command."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["console"]


def console(*, stderr: bool = False) -> Any:
    """A rich Console for tables: the terminal's width on a terminal; when the output is
    piped or redirected, wide enough (``$COLUMNS``, else 160) that tables are not squeezed."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty():
        width = int(os.environ.get("COLUMNS", "") or 160)
    return Console(file=stream, width=width)
