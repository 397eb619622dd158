"""The predictor: the model if it loads, else baselines with a warning, else a default."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from planner.history import HistoryStore
from planner.learning.predictor import Predictor
from planner.learning.registry import MODEL_FILE, Registry
from planner.learning.training import train_pipeline
from planner.planning.model import TaskQuery


def _tasks(n: int = 4) -> list[TaskQuery]:
    params = {"region": "eu", "pages": 200}
    accounts = ["a1", "a2", "a3", "a4"]
    return [TaskQuery("collect", accounts[i % 4], 200.0, params, 4, 4) for i in range(n)]


@pytest.fixture
def trained(
    make_history: Callable[..., pd.DataFrame],
    tmp_path: Path,
    fast_params: dict,
    ledger: HistoryStore,
) -> tuple[pd.DataFrame, Registry, str]:
    frame = make_history(40, seed=11, quantities=None, noise=0.05)
    registry = Registry(tmp_path / "models", ledger=ledger)
    result = train_pipeline(
        frame, pipeline="p", registry=registry, model_params=fast_params, min_model_rows=100
    )
    return frame, registry, result.model_id


def _now(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    return frame["finished_at"].max().to_pydatetime() + timedelta(minutes=5)


def test_model_predicts_with_bound_and_memory(trained: tuple[pd.DataFrame, Registry, str]) -> None:
    frame, registry, _model_id = trained
    predictor = Predictor.load(registry.root, "p", frame, ledger=registry.ledger)
    assert predictor.mode == "model" and predictor.warnings == []
    est = predictor.predict(_tasks(), _now(frame))
    assert [e.source for e in est] == ["model"] * 4
    assert all(e.bound_s >= e.predicted_s > 0 for e in est)
    assert est[0].peak_rss_mb == pytest.approx(50.0)
    # a heavier account takes longer, as in the history
    assert est[3].predicted_s > est[0].predicted_s


def test_tampered_model_file_falls_back_to_baselines_with_a_warning(
    trained: tuple[pd.DataFrame, Registry, str],
) -> None:
    frame, registry, model_id = trained
    path = registry.model_dir("p", model_id) / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    predictor = Predictor.load(registry.root, "p", frame, ledger=registry.ledger)
    assert predictor.mode == "baselines"
    assert len(predictor.warnings) == 1
    assert model_id in predictor.warnings[0]
    assert "sha256" in predictor.warnings[0] and "using baselines" in predictor.warnings[0]
    est = predictor.predict(_tasks(), _now(frame))
    assert all(e.source.startswith(("last2:", "last10:")) for e in est)
    assert all(e.bound_s >= e.predicted_s > 0 for e in est)


def test_no_model_uses_baselines_and_no_history_uses_the_default(
    make_history: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    frame = make_history(5)
    predictor = Predictor.load(tmp_path, "p", frame, ledger=None)
    assert predictor.mode == "baselines"
    assert "no trained model" in predictor.warnings[0]
    est = predictor.predict(_tasks(1), _now(frame))[0]
    assert est.source == "last2:step,account,quantity,params" or est.source.startswith("last10:")

    empty = Predictor.load(tmp_path, "p", frame.iloc[:0], ledger=None, default_s=90.0)
    assert empty.mode == "default"
    est = empty.predict(_tasks(2), _now(frame))
    assert [(e.predicted_s, e.bound_s, e.source) for e in est] == [(90.0, 90.0, "default")] * 2


def test_bound_state_catches_up_with_attempts_finished_after_training(
    trained: tuple[pd.DataFrame, Registry, str], make_history: Callable[..., pd.DataFrame]
) -> None:
    frame, registry, _ = trained
    before = Predictor.load(registry.root, "p", frame, ledger=registry.ledger)
    later = make_history(50, seed=11, quantities=None, noise=0.05)  # 10 more runs, 3x slower
    late = later["started_at"] > frame["started_at"].max()
    later.loc[late, "duration_s"] *= 3.0
    later["finished_at"] = later["started_at"] + pd.to_timedelta(later["duration_s"], unit="s")
    after = Predictor.load(registry.root, "p", later, ledger=registry.ledger)
    assert after.model is not None and before.model is not None
    assert after.model.conformal_.updates_ > before.model.conformal_.updates_
    assert after.model.conformal_.alpha_t_ < before.model.conformal_.alpha_t_  # overruns seen


def test_ten_thousand_tasks_quickly(trained: tuple[pd.DataFrame, Registry, str]) -> None:
    frame, registry, _ = trained
    predictor = Predictor.load(registry.root, "p", frame, ledger=registry.ledger)
    tasks = _tasks(10_000)
    now = _now(frame)
    predictor.predict(tasks, now)
    t0 = time.perf_counter()
    est = predictor.predict(tasks, now)
    elapsed = time.perf_counter() - t0
    assert len(est) == 10_000
    assert all(e.source == "model" and e.bound_s >= e.predicted_s > 0 for e in est)
    assert elapsed < 1.0  # generous on a shared machine; benchmarks/ measures the real figure
