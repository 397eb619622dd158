"""Attempt rows written in order by one background thread, off the scheduler's path.

The scheduler hands over each write as it happens (start rows right after the spawn,
finish rows right after the exit) and goes on starting tasks; the writer thread applies
them in the same order, so a finish row always follows its start row. A failed write is
raised again in the scheduler at the next :meth:`RowWriter.flush` or ``submit``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from planner.execution.stopping import block_stop_signals

__all__ = ["RowRef", "RowWriter"]


@dataclass
class RowRef:
    """The id of an attempt row, known once the writer has inserted it."""

    attempt_id: int = -1


class RowWriter:
    """Runs submitted writes one by one, in order, in a daemon thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="row-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], object]) -> None:
        self._raise()
        self._queue.put(write)

    def flush(self) -> None:
        """Wait until every submitted write is done; raise the first that failed."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Finish the pending writes and stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _loop(self) -> None:
        block_stop_signals()
        while True:
            write = self._queue.get()
            try:
                if write is None:
                    return
                if self._error is None:
                    write()
            except BaseException as exc:  # handed to the scheduler thread
                self._error = exc
            finally:
                self._queue.task_done()
