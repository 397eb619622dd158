"""Pausing Python's cyclic garbage collector around allocation-heavy, cycle-free work.

Building a plan, a prediction or a DataFrame of history creates millions of short-lived
objects; the full collections they trigger walk everything the process holds (the
loaded history, the model) and cost more than the work itself (~120 ms per plan in
``benchmarks/bench_planning.py latency``). Reference counting still frees everything;
only the cycle detector waits until the block ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic collector paused while the block runs (restored as it was after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
