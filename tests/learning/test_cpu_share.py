"""The CPU share per step (cores one task keeps busy) from an attempts frame, and the
predictor handing it to planning on each task's estimate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from planner.learning.cpu import LAST, MIN_SHARE, cpu_share_by_step
from planner.learning.predictor import Predictor
from planner.planning.model import TaskEstimate, TaskQuery

History = Callable[..., pd.DataFrame]


def with_shares(frame: pd.DataFrame, shares: dict[str, float]) -> pd.DataFrame:
    """``frame`` whose attempts used ``shares[step]`` cores over their duration."""
    out = frame.copy()
    out["cpu_s"] = out["duration_s"] * out["step"].map(shares).astype("float64")
    return out


def test_share_per_step_from_cpu_and_wall_seconds(make_history: History) -> None:
    frame = with_shares(make_history(5), {"collect": 0.075, "aggregate": 1.0})
    assert cpu_share_by_step(frame) == pytest.approx({"collect": 0.075, "aggregate": 1.0})


def test_a_high_quantile_of_the_recent_attempts(make_history: History) -> None:
    frame = make_history(10, steps=("collect",), accounts=("a1", "a2"))  # 20 attempts
    shares = np.linspace(0.01, 0.20, len(frame))  # in time order
    frame["cpu_s"] = frame["duration_s"] * shares
    assert cpu_share_by_step(frame)["collect"] == pytest.approx(np.quantile(shares, 0.9))
    assert cpu_share_by_step(frame, quantile=0.5)["collect"] == pytest.approx(np.median(shares))
    # only the last LAST attempts count: older, busier ones are forgotten
    older = frame.copy()
    older["started_at"] = older["started_at"] - pd.Timedelta(days=30)
    older["cpu_s"] = older["duration_s"] * 3.0
    both = pd.concat([older, frame], ignore_index=True)
    assert len(frame) == LAST
    assert cpu_share_by_step(both)["collect"] == pytest.approx(np.quantile(shares, 0.9))


def test_unmeasured_short_and_unfinished_attempts_are_ignored(make_history: History) -> None:
    frame = with_shares(make_history(3, steps=("a", "b", "c", "d")), {"a": 0.5, "b": 0.5})
    frame.loc[frame["step"] == "a", "duration_s"] = 0.01  # too short to measure
    frame.loc[frame["step"] == "a", "cpu_s"] = 0.01
    running = frame["step"] == "c"
    frame.loc[running, "status"] = "running"
    frame.loc[running, "cpu_s"] = 1.0
    # d has no cpu_s at all (NaN, as imports without CPU figures)
    assert cpu_share_by_step(frame) == pytest.approx({"b": 0.5})
    assert cpu_share_by_step(frame.iloc[:0]) == {}
    assert cpu_share_by_step(frame.drop(columns=["cpu_s"])) == {}


def test_succeeded_attempts_are_preferred(make_history: History) -> None:
    frame = with_shares(make_history(4, steps=("ok", "broken")), {"ok": 0.1, "broken": 0.3})
    # half of ok's attempts failed fast, spinning: they do not count while it has successes
    failed = (frame["step"] == "ok") & (frame.index % 2 == 0)
    frame.loc[failed, "status"] = "failed"
    frame.loc[failed, "cpu_s"] = frame.loc[failed, "duration_s"]
    # a step that never succeeded: its failures are all there is
    frame.loc[frame["step"] == "broken", "status"] = "timed_out"
    assert cpu_share_by_step(frame) == pytest.approx({"ok": 0.1, "broken": 0.3})


def test_shares_are_clamped_to_the_least_share_and_the_cores(make_history: History) -> None:
    frame = with_shares(make_history(3, steps=("sleeps", "spins")), {"sleeps": 0.0, "spins": 9})
    got = cpu_share_by_step(frame)  # the history's machine had 2 cores
    assert got == pytest.approx({"sleeps": MIN_SHARE, "spins": 2.0})
    frame["cpu_count"] = pd.array([None] * len(frame), dtype="Int64")  # cores not recorded
    assert cpu_share_by_step(frame)["spins"] == pytest.approx(9.0)
    with pytest.raises(ValueError, match="quantile"):
        cpu_share_by_step(frame, quantile=0.0)


def test_task_estimate_keeps_its_positional_fields() -> None:
    old = TaskEstimate(10.0, 12.0, "model", 400.0)
    assert old.cpu_share is None
    assert TaskEstimate(10.0, 12.0, "model", 400.0, 0.2).cpu_share == 0.2


def _load(models: Path, frame: pd.DataFrame, **kwargs: Any) -> Predictor:
    """No models folder and no ledger: the baselines (or the default) predict."""
    return Predictor.load(models, "p", frame, ledger=None, **kwargs)


def test_the_predictor_puts_each_steps_share_on_its_tasks(
    make_history: History, tmp_path: Path
) -> None:
    frame = with_shares(make_history(6), {"collect": 0.06, "aggregate": 1.0})
    frame.loc[frame["step"] == "aggregate", "cpu_s"] = np.nan  # never measured
    now = frame["finished_at"].max().to_pydatetime() + timedelta(minutes=5)
    tasks = [
        TaskQuery(step, account, 100.0, {"region": "eu", "pages": 100}, 4, 4)
        for step in ("collect", "aggregate", "new")
        for account in ("a1", "a3")
    ]
    estimates = _load(tmp_path, frame).predict(tasks, now)
    shares = [e.cpu_share for e in estimates]
    assert shares[:2] == pytest.approx([0.06, 0.06])
    assert shares[2:] == [None] * 4
    assert all(e.predicted_s > 0 for e in estimates)
    # no finished attempt at all: the default estimate, with no share
    empty = _load(tmp_path, frame.iloc[:0], default_s=90.0).predict(tasks[:1], now)
    assert empty[0].source == "default" and empty[0].cpu_share is None
