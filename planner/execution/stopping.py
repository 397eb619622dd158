"""Stop signals: SIGINT and SIGTERM ask the runner to stop; handlers only set flags.

Python runs signal handlers in the main thread, and two signals that arrive before the
handler ran are seen as one. So the runner's own threads block both signals
(:func:`block_stop_signals`): the kernel then delivers them to the main thread, which
wakes at once, and a quick second signal is counted as the second one.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["STOP_SIGNALS", "block_stop_signals", "handle_signals", "stop_signals_blocked"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def block_stop_signals() -> None:
    """Block SIGINT and SIGTERM in the calling thread (call first thing in a worker thread)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block the stop signals while the block runs: threads started here inherit the mask."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def handle_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``request_stop`` while the block runs (main thread only)."""

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        request_stop()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
