"""Durations that grow with the size of the work: the per-step line, and predictions that
follow it beyond the sizes the history has seen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from planner.history import FRAME_DTYPES
from planner.learning.growth import fit_growth, ratio
from planner.learning.predictor import Predictor
from planner.planning.model import TaskQuery

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _history(
    durations: dict[str, object], quantities: list[float], runs: int = 4, seed: int = 0
) -> pd.DataFrame:
    """Runs of steps (name -> f(quantity, account index)) for 6 accounts; each run at the
    next quantity of ``quantities`` (cycled)."""
    rng = np.random.default_rng(seed)
    rows = []
    t = T0
    for r in range(runs * len(quantities)):
        q = quantities[r % len(quantities)]
        for step, f in durations.items():
            for i in range(6):
                d = float(f(q, i)) * float(rng.lognormal(0.0, 0.03))  # type: ignore[operator]
                rows.append(
                    {
                        "attempt_id": len(rows) + 1, "run_id": f"r{r}", "pipeline": "g",
                        "step": step, "account": f"a{i}", "attempt": 1, "quantity": q,
                        "params": {}, "n_accounts": 6, "concurrency": 6, "host": "h",
                        "started_at": t, "finished_at": t + timedelta(seconds=d),
                        "duration_s": d, "status": "succeeded", "exit_code": 0,
                        "error_class": None, "peak_rss_mb": 50.0, "cpu_s": d / 2,
                        "load_avg": 0.5, "free_mem_mb": 8000.0, "cpu_count": 4,
                        "source": "planner",
                    }
                )  # fmt: skip
        t += timedelta(hours=1)
    frame = pd.DataFrame(rows)
    return frame.astype({k: v for k, v in FRAME_DTYPES.items() if k != "params"})


def _linear(q: float, i: int) -> float:
    return (2.0 + 0.5 * i) + (3.0 + i) * q  # a fixed part and a rate, per account


def test_the_line_recovers_a_fixed_part_and_a_rate() -> None:
    growth = fit_growth(_history({"grow": _linear}, [1.0, 2.0, 3.0]))
    line = growth.steps["grow"]
    assert line.source == "step" and line.sizes == 3 and line.largest == 3.0
    # pooled over accounts: fixed 3.25 s, rate 5.5 s per unit
    assert line.fixed == pytest.approx(3.25, rel=0.3)
    assert line.rate == pytest.approx(5.5, rel=0.1)
    work = growth.work(["grow", "grow"], np.array([3.0, 12.0]))
    assert work[1] / work[0] == pytest.approx((3.25 + 5.5 * 12) / (3.25 + 5.5 * 3), rel=0.05)


def test_no_relation_stays_flat_and_one_size_borrows_the_pipeline_rate() -> None:
    rng = np.random.default_rng(1)
    noise = rng.uniform(5.0, 15.0, size=1000)
    history = _history(
        {
            "grow": _linear,
            "noise": lambda q, i: noise[int(q * 7 + i) % 1000],  # no relation with q
            "single": lambda q, i: 10.0,  # seen at one size only (below)
        },
        [1.0, 2.0, 3.0],
    )
    history.loc[history["step"] == "single", "quantity"] = 2.0
    growth = fit_growth(history)
    assert growth.steps["noise"].source == "flat"
    assert growth.steps["single"].source == "pipeline"
    assert growth.elasticity is not None and 0.5 < growth.elasticity < 1.0
    flat = growth.work(["noise", "noise"], np.array([1.0, 30.0]))
    assert flat[0] == flat[1]
    borrowed = growth.work(["single", "single"], np.array([2.0, 8.0]))
    assert borrowed[1] > 2.0 * borrowed[0]
    assert "pipeline's rate" in growth.describe("single")
    assert ratio(np.array([1e9, np.nan]), np.array([1.0, 1.0])).tolist() == [50.0, 1.0]


@pytest.mark.parametrize("use_model", [False, True])
def test_a_4x_quantity_is_predicted_about_4x(use_model: bool, tmp_path: Path) -> None:
    """History at quantities 1-3, planned at 12: the prediction follows the line."""
    history = _history({"grow": _linear}, [1.0, 2.0, 3.0], runs=20 if use_model else 4)
    models = tmp_path / "models"
    ledger = None
    if use_model:
        from planner.history import HistoryStore
        from planner.learning.registry import Registry
        from planner.learning.training import train_pipeline

        ledger = HistoryStore(f"sqlite:///{tmp_path / 'h.db'}")
        registry = Registry(models, ledger=ledger)
        train_pipeline(history, pipeline="g", registry=registry, min_model_rows=200)
    predictor = Predictor.load(models, "g", history, ledger=ledger)
    assert predictor.mode == ("model" if use_model else "baselines")

    def ask(q: float) -> list[float]:
        tasks = [TaskQuery("grow", f"a{i}", q, {}, 6, 6) for i in range(6)]
        now = T0 + timedelta(days=30)
        return [e.predicted_s for e in predictor.predict(tasks, now)]

    at3, at12 = ask(3.0), ask(12.0)
    truth = [_linear(12.0, i) for i in range(6)]
    for i in range(6):
        assert at12[i] / at3[i] >= 3.0  # the truth is ~3.8x
        assert abs(at12[i] / truth[i] - 1.0) <= 0.35
    assert predictor.extrapolations == [
        "step grow: quantity 12 is 4.0x the largest seen (3): predicted by the rate fitted "
        f"on {min(len(history), 500)} attempts"
    ]
    if ledger is not None:
        ledger.close()


def test_params_marked_as_sizes_drive_the_growth(tmp_path: Path) -> None:
    history = _history({"fetch": lambda q, i: 1.0 + 0.5 * q}, [10.0, 20.0, 30.0])
    history["params"] = [{"pages": q} for q in history["quantity"].tolist()]
    history["quantity"] = 0.0  # the size is in a param, not in the quantity
    now = T0 + timedelta(days=30)
    tasks = [TaskQuery("fetch", "a0", 0.0, {"pages": p}, 6, 6) for p in (30, 120)]
    marked = Predictor.load(tmp_path, "g", history, ledger=None, size_params={"fetch": ["pages"]})
    at30, at120 = (e.predicted_s for e in marked.predict(tasks, now))
    assert at120 / at30 == pytest.approx(61.0 / 16.0, rel=0.1)
    assert marked.extrapolations == [
        "step fetch: size (quantity x pages) 120 is 4.0x the largest seen (30): predicted by "
        "the rate fitted on 72 attempts"
    ]
    unmarked = Predictor.load(tmp_path, "g", history, ledger=None)
    at30, at120 = (e.predicted_s for e in unmarked.predict(tasks, now))
    assert at120 / at30 < 1.5 and unmarked.extrapolations == []  # nothing says pages is a size


def test_a_size_must_name_a_numeric_param() -> None:
    from pydantic import ValidationError

    from planner.config.models import Step

    assert Step(id="1", command=["x"], params={"pages": 5}, size="pages").size == ("pages",)
    with pytest.raises(ValidationError, match="'pagez' is not a param of this step"):
        Step(id="1", command=["x"], params={"pages": 5}, size=["pagez"])
    with pytest.raises(ValidationError, match="must be a number > 0"):
        Step(id="1", command=["x"], params={"pages": "many"}, size=["pages"])


def test_train_reports_the_test_attempts_beyond_the_seen_sizes(tmp_path: Path) -> None:
    from planner.history import HistoryStore
    from planner.learning.registry import Registry
    from planner.learning.training import train_pipeline

    early = _history({"grow": _linear}, [1.0, 2.0, 3.0], runs=20)
    late = _history({"grow": _linear}, [6.0, 9.0], runs=5, seed=1)
    late["started_at"] += timedelta(days=10)
    late["finished_at"] += timedelta(days=10)
    late["attempt_id"] += len(early)
    frame = pd.concat([early, late], ignore_index=True)
    with HistoryStore(f"sqlite:///{tmp_path / 'h.db'}") as ledger:
        result = train_pipeline(
            frame, pipeline="g", registry=Registry(tmp_path / "m", ledger=ledger), holdout=0.3
        )
    doc = result.as_json()["extrapolated"]
    assert doc["attempts"] == 12  # the first run at 6 and the first at 9, 6 accounts each
    served = doc["methods"][result.serving.method if result.serving else "model"]
    assert served["mdape"] < 0.35  # the line carries the prediction past the seen sizes
    assert any("beyond the largest size their step had seen" in m for m in result.messages)
