"""Fixtures of the learning tests: synthetic attempt histories with the contract's columns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from planner.history import HistoryStore

START = datetime(2026, 1, 1, tzinfo=UTC)


def synthetic_history(
    n_runs: int = 60,
    *,
    steps: tuple[str, ...] = ("collect", "aggregate"),
    accounts: tuple[str, ...] = ("a1", "a2", "a3", "a4"),
    drift: float = 0.0,
    noise: float = 0.15,
    seed: int = 0,
    pipeline: str = "synthetic",
    every_s: float = 3600.0,
    quantities: tuple[float, ...] | None = (100.0, 200.0, 400.0),
) -> pd.DataFrame:
    """Runs every ``every_s``; each task's duration depends on step, account and quantity,
    grows by ``drift`` (log scale) over the history, with log-normal ``noise``.
    ``quantities=None`` draws a continuous quantity in [50, 500]."""
    rng = np.random.default_rng(seed)
    rows = []
    base = {s: 30.0 * (i + 1) for i, s in enumerate(steps)}
    weight = {a: 1.0 + 0.5 * i for i, a in enumerate(accounts)}
    for run in range(n_runs):
        t0 = pd.Timestamp(START) + pd.Timedelta(seconds=run * every_s)
        for step in steps:
            for account in accounts:
                quantity = (
                    float(rng.choice(quantities))
                    if quantities
                    else float(np.round(rng.uniform(50, 500), 1))
                )
                scale = np.exp(drift * run / max(n_runs - 1, 1))
                duration = base[step] * weight[account] * (quantity / 100.0) ** 0.7 * scale
                duration *= float(np.exp(rng.normal(0.0, noise)))
                offset = float(rng.uniform(0, 60))
                started = t0 + pd.Timedelta(seconds=offset)
                rows.append(
                    {
                        "run_id": f"r{run}",
                        "step": step,
                        "account": account,
                        "quantity": quantity,
                        "params": {"region": "eu", "pages": int(quantity)},
                        "started_at": started,
                        "duration_s": duration,
                        "peak_rss_mb": 50.0 * weight[account],
                    }
                )
    frame = pd.DataFrame(rows)
    n = len(frame)
    frame["finished_at"] = frame["started_at"] + pd.to_timedelta(frame["duration_s"], unit="s")
    frame = frame.sort_values("started_at", kind="stable").reset_index(drop=True)
    out = pd.DataFrame(
        {
            "attempt_id": np.arange(1, n + 1, dtype="int64"),
            "run_id": pd.array(frame["run_id"], dtype="string"),
            "pipeline": pd.array([pipeline] * n, dtype="string"),
            "step": pd.array(frame["step"], dtype="string"),
            "account": pd.array(frame["account"], dtype="string"),
            "attempt": np.ones(n, dtype="int64"),
            "quantity": frame["quantity"].astype("float64"),
            "params": frame["params"],
            "n_accounts": pd.array([len(accounts)] * n, dtype="Int64"),
            "concurrency": pd.array([4] * n, dtype="Int64"),
            "host": pd.array(["h"] * n, dtype="string"),
            "started_at": frame["started_at"].astype("datetime64[us, UTC]"),
            "finished_at": frame["finished_at"].astype("datetime64[us, UTC]"),
            "duration_s": frame["duration_s"].astype("float64"),
            "status": pd.array(["succeeded"] * n, dtype="string"),
            "exit_code": pd.array([0] * n, dtype="Int64"),
            "error_class": pd.array([None] * n, dtype="string"),
            "peak_rss_mb": frame["peak_rss_mb"].astype("float64"),
            "cpu_s": np.full(n, np.nan),
            "load_avg": np.full(n, np.nan),
            "free_mem_mb": np.full(n, np.nan),
            "cpu_count": pd.array([2] * n, dtype="Int64"),
            "source": pd.array(["planner"] * n, dtype="string"),
        }
    )
    return out


@pytest.fixture
def make_history() -> Callable[..., pd.DataFrame]:
    """``make_history(n_runs, ...)``: a synthetic attempts frame (see synthetic_history)."""
    return synthetic_history


#: Small, fast gradient boosting for tests.
FAST = {"max_iter": 30, "quantile_max_iter": 30, "learning_rate": 0.2}


@pytest.fixture
def fast_params() -> dict[str, float]:
    return dict(FAST)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[HistoryStore]:
    """A real SQLite history: the model registry records and checks digests there."""
    store = HistoryStore(f"sqlite:///{tmp_path / 'ledger' / 'history.db'}")
    yield store
    store.close()


def import_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """An attempts frame as rows for ``HistoryStore.import_attempts`` (every attempt
    succeeded; the row's position is its source key)."""
    return [
        {
            "source_key": str(i),
            "pipeline": r.pipeline,
            "run_id": r.run_id,
            "step": r.step,
            "account": r.account,
            "quantity": r.quantity,
            "params": r.params,
            "started_at": r.started_at.to_pydatetime(),
            "finished_at": r.finished_at.to_pydatetime(),
            "duration_s": r.duration_s,
            "status": "succeeded",
            "peak_rss_mb": getattr(r, "peak_rss_mb", None),
        }
        for i, r in enumerate(frame.itertuples(index=False))
    ]


def store_frame(store: HistoryStore, frame: pd.DataFrame) -> pd.DataFrame:
    """Write an attempts frame into the real history; read it back as training reads it."""
    store.import_attempts(import_rows(frame), source="test")
    return store.attempts_frame(str(frame["pipeline"].iloc[0]))
