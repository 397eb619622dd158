"""Shared by the benchmarks that time the model's prediction path (imported from the
benchmarks' own folder, which is first on ``sys.path`` when a benchmark runs as a script)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def serving_the_model() -> Iterator[None]:
    """Make ``train_pipeline`` keep the boosted model live even where the holdout gate
    would let a baseline serve (on these synthetic histories the two are close): the
    benchmark times the model's prediction path."""
    from planner.learning import training

    def model(_ev: object, quantile: float) -> training.Serving:
        return training.Serving("model", "benchmark", "model", None, None, None, quantile)

    saved = training.judge
    training.judge = model  # type: ignore[assignment]
    try:
        yield
    finally:
        training.judge = saved
