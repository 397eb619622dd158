"""The predictor's batch path: distinct tasks built once, same features and estimates."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from planner.history import HistoryStore
from planner.learning import predictor as predictor_module
from planner.learning.features import (
    attempt_features,
)
from planner.learning.predictor import Predictor
from planner.learning.queries import (
    query_features,
    query_table,
    snapshot,
)
from planner.learning.registry import Registry
from planner.learning.training import train_pipeline
from planner.planning.model import TaskEstimate, TaskQuery


def _mixed_tasks() -> list[TaskQuery]:
    """Repeats, equal params in distinct mappings, None accounts, unknown groups, NaN."""
    shared = {"region": "eu", "pages": 200}
    tasks = []
    for i in range(60):
        params = shared if i % 3 else {"pages": 200.0, "region": "eu"}  # same content
        account = (None, "a1", "a2", "a3", "a4", "nobody")[i % 6]
        quantity = (100.0, 200, 400.0, math.nan)[i % 4]
        tasks.append(
            TaskQuery(
                ("collect", "aggregate", "new")[i % 3], account, quantity, params, 4 + i % 2, 4
            )
        )
    tasks.append(TaskQuery("collect", "a1", 100.0, {"other": 1.5, "flag": True}, 4, 4))
    return tasks


def test_query_table_builds_distinct_tasks_once_and_matches_one_by_one(
    make_history: Callable[..., pd.DataFrame],
) -> None:
    frame = make_history(12, seed=5)
    now = frame["finished_at"].max().to_pydatetime() + timedelta(minutes=1)
    snap = snapshot(frame, now)
    tasks = _mixed_tasks() * 2  # every task twice
    table = query_table(snap, tasks, now)
    # the second half repeats the first: the same rows
    half = len(tasks) // 2
    assert len(table.frame) <= half
    assert table.rows[:half].tolist() == table.rows[half:].tolist()
    assert [table.steps[r] for r in table.rows] == [t.step for t in tasks]
    assert [table.accounts[r] for r in table.rows] == [t.account for t in tasks]
    together = query_features(snap, tasks, now)
    for i, task in enumerate(tasks):
        alone = query_features(snap, [task], now)
        # numeric params are columns of the whole batch: NaN for a task without them
        extra = [c for c in together.columns if c not in alone.columns]
        assert extra == [] or together.loc[i, extra].isna().all()
        pd.testing.assert_frame_equal(
            together.loc[[i], list(alone.columns)].reset_index(drop=True),
            alone,
            check_exact=True,
        )


def test_query_features_of_many_tasks_match_attempt_features(
    make_history: Callable[..., pd.DataFrame],
) -> None:
    frame = make_history(15, seed=8)
    last_start = frame["started_at"].max()
    runs = frame.loc[frame["started_at"] >= last_start - pd.Timedelta(minutes=1)]
    now = runs["started_at"].min().to_pydatetime()
    targets = frame.loc[frame["started_at"] == runs["started_at"].min()]
    tasks = [
        TaskQuery(
            str(r.step),
            str(r.account),
            float(r.quantity),
            dict(r.params),
            int(r.n_accounts),
            int(r.concurrency),
        )
        for r in targets.itertuples()
    ]
    got = query_features(snapshot(frame, now), tasks, now)
    want = attempt_features(frame).loc[targets.index].reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    np.testing.assert_allclose(
        got.to_numpy(dtype=float), want.to_numpy(dtype=float), equal_nan=True
    )


@pytest.fixture
def trained(
    make_history: Callable[..., pd.DataFrame],
    tmp_path: Path,
    fast_params: dict,
    ledger: HistoryStore,
) -> tuple[pd.DataFrame, Path]:
    frame = make_history(40, seed=11, quantities=None, noise=0.05)
    registry = Registry(tmp_path / "models", ledger=ledger)
    train_pipeline(
        frame, pipeline="p", registry=registry, model_params=fast_params, min_model_rows=100
    )
    return frame, registry.root


@pytest.mark.parametrize("with_model", [True, False])
def test_repeated_tasks_get_the_estimates_of_each_task_alone(
    trained: tuple[pd.DataFrame, Path], tmp_path: Path, with_model: bool, ledger: HistoryStore
) -> None:
    frame, root = trained
    predictor = Predictor.load(root if with_model else tmp_path / "none", "p", frame, ledger=ledger)
    assert predictor.mode == ("model" if with_model else "baselines")
    now = frame["finished_at"].max().to_pydatetime() + timedelta(minutes=5)
    tasks = _mixed_tasks() * 3
    together = predictor.predict(tasks, now)
    assert len(together) == len(tasks)
    for task, estimate in zip(tasks, together, strict=True):
        alone = predictor.predict([task], now)[0]
        assert estimate == alone
        assert estimate.bound_s >= estimate.predicted_s > 0


def test_predict_sets_the_model_thread_limit_without_rediscovering_libraries(
    trained: tuple[pd.DataFrame, Path], monkeypatch: pytest.MonkeyPatch, ledger: HistoryStore
) -> None:
    import threadpoolctl

    frame, root = trained
    predictor = Predictor.load(root, "p", frame, ledger=ledger)
    assert predictor.threads == 1 and predictor.model is not None
    assert predictor.model.threads is None  # applied by the predictor instead

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("threadpool_limits called on every prediction")

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", refuse)
    now = frame["finished_at"].max().to_pydatetime() + timedelta(minutes=5)
    assert len(predictor.predict(_mixed_tasks(), now)) == 61
    with predictor._thread_limit():
        openmp = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openmp"]
        assert all(i["num_threads"] == 1 for i in openmp)


def test_fast_estimates_equal_constructed_ones() -> None:
    assert predictor_module._FAST_ESTIMATES
    built = predictor_module._estimates([1.0, 2.5], [2.0, 3.0], ["model", "default"], [None, 4.0])
    want = [TaskEstimate(1.0, 2.0, "model", None), TaskEstimate(2.5, 3.0, "default", 4.0)]
    assert built == want
    assert [hash(e) for e in built] == [hash(e) for e in want]
    assert [repr(e) for e in built] == [repr(e) for e in want]
    with pytest.raises(AttributeError):
        built[0].predicted_s = 3.0  # type: ignore[misc]
