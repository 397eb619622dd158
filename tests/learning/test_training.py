"""Training: holdout figures, save through the registry, promotion only when not worse."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from planner.errors import UsageError
from planner.history import HistoryStore
from planner.learning.models import ModelBundle
from planner.learning.predictor import Predictor
from planner.learning.registry import Registry
from planner.learning.training import train_pipeline
from planner.planning.model import TaskQuery


def test_tiny_history_trains_baselines_only_and_still_predicts_and_bounds(
    make_history: Callable[..., pd.DataFrame], tmp_path: Path, ledger: HistoryStore
) -> None:
    frame = make_history(4, steps=("s",), accounts=("a1", "a2"))  # 8 attempts
    registry = Registry(tmp_path, ledger=ledger)
    result = train_pipeline(frame, pipeline="tiny", registry=registry, holdout=0.3)
    assert result.baselines_only
    assert any("baselines only" in m for m in result.messages)
    assert result.promoted and registry.current_id("tiny") == result.model_id
    card = registry.card("tiny", result.model_id)
    assert card["kind"] == "baselines"
    assert card["training"]["rows"] == 8
    predictor = Predictor.load(tmp_path, "tiny", frame, ledger=ledger)
    assert predictor.mode == "model"
    now = frame["finished_at"].max().to_pydatetime() + timedelta(minutes=1)
    tasks = [
        TaskQuery("s", "a1", 100.0, {"region": "eu", "pages": 100}, 2, 4),
        TaskQuery("s", "new", 7.0, {}, 2, 4),
    ]
    est = predictor.predict(tasks, now)
    assert est[0].source.startswith(("last2:", "last10:"))
    assert est[1].source in ("last2:step", "last10:step")
    assert all(e.bound_s >= e.predicted_s > 0 for e in est)


def test_one_attempt_is_enough(
    make_history: Callable[..., pd.DataFrame], tmp_path: Path, ledger: HistoryStore
) -> None:
    frame = make_history(1, steps=("s",), accounts=("a",))
    result = train_pipeline(frame, pipeline="one", registry=Registry(tmp_path, ledger=ledger))
    assert result.rows_test == 0
    assert any("no holdout" in m for m in result.messages)
    assert result.as_json()["methods"]["model"]["mae_s"] is None


def test_empty_history_is_bad_input(
    make_history: Callable[..., pd.DataFrame], tmp_path: Path, ledger: HistoryStore
) -> None:
    frame = make_history(1).iloc[:0]
    with pytest.raises(UsageError, match="no finished attempt"):
        train_pipeline(frame, pipeline="none", registry=Registry(tmp_path, ledger=ledger))


def _sized(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same attempts, their durations now set by a numeric param that never repeats
    and is not a marked size: boosting sees it, the grouped (and growth-scaled) means
    cannot."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    size = np.round(rng.uniform(1, 100, len(out)), 3)
    out["params"] = [{"size": float(v)} for v in size]
    out["quantity"] = 1.0
    out["duration_s"] = out["duration_s"] * (1 + size / 10)
    out["finished_at"] = (
        out["started_at"] + pd.to_timedelta(out["duration_s"], unit="s")
    ).dt.round("us")
    out["duration_s"] = (out["finished_at"] - out["started_at"]).dt.total_seconds()
    return out


def test_promotes_only_when_not_worse_on_the_recent_holdout(
    make_history: Callable[..., pd.DataFrame],
    tmp_path: Path,
    ledger: HistoryStore,
    fast_params: dict,
) -> None:
    registry = Registry(tmp_path, ledger=ledger)
    frame = _sized(make_history(60, seed=7, noise=0.05), seed=7)
    first = train_pipeline(
        frame.iloc[:300],
        pipeline="p",
        registry=registry,
        model_params=fast_params,
        min_model_rows=100,
    )
    assert first.promoted and not first.baselines_only, first.messages
    assert isinstance(registry.load("p").obj, ModelBundle)
    # a baselines-only retraining is worse on the attempts since: the current one stays
    worse = train_pipeline(frame, pipeline="p", registry=registry, min_model_rows=10**6)
    assert worse.baselines_only
    assert not worse.promoted, worse.messages
    assert registry.current_id("p") == first.model_id
    assert any("kept current" in m for m in worse.messages)
    # a proper one on the longer history is promoted, and it says so
    better = train_pipeline(
        frame, pipeline="p", registry=registry, model_params=fast_params, min_model_rows=100
    )
    assert better.promoted, better.messages
    assert registry.current_id("p") == better.model_id
    assert any("new is live" in m for m in better.messages)
