"""A model goes live only when it is not worse than the best grouped baseline on the
holdout; else that baseline serves, as the same estimator it was scored as, and the
training, its JSON and the model's card say why."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from planner.cli import main
from planner.history import HistoryStore
from planner.learning.models import DurationModel, ModelBundle
from planner.learning.predictor import Predictor
from planner.learning.registry import Registry
from planner.learning.training import (
    GATE_METRIC_TOLERANCE,
    model_not_worse,
    train_pipeline,
)
from planner.planning.model import TaskQuery
from planner.service.training import list_models

from .conftest import store_frame

START = pd.Timestamp("2026-01-01", tz="UTC")
#: A boosting model crippled on purpose: one tree at a tiny rate predicts about the mean.
CRIPPLED = {"variant": "hgb", "max_iter": 1, "learning_rate": 0.01, "quantile_max_iter": 5}


def sized_history(n_runs: int = 40, *, seed: int = 0, pipeline: str = "sized") -> pd.DataFrame:
    """Durations set by a numeric param that never repeats (not a marked size): boosting
    sees it, the grouped means cannot (no two attempts share a params group)."""
    rng = np.random.default_rng(seed)
    rows = []
    for run in range(n_runs):
        t0 = START + pd.Timedelta(hours=run)
        for step, base in (("s1", 20.0), ("s2", 60.0)):
            for k, account in enumerate(("a1", "a2", "a3", "a4")):
                size = float(np.round(rng.uniform(1, 100), 3))
                duration = base * (1 + 0.3 * k) * (1 + size / 10) * np.exp(rng.normal(0, 0.05))
                started = (t0 + pd.Timedelta(seconds=float(rng.uniform(0, 60)))).round("us")
                rows.append(
                    {
                        "pipeline": pipeline,
                        "run_id": f"r{run}",
                        "step": step,
                        "account": account,
                        "quantity": 1.0,
                        "params": {"size": size},
                        "started_at": started,
                        "finished_at": (started + pd.Timedelta(seconds=duration)).round("us"),
                        "duration_s": duration,
                    }
                )
    return pd.DataFrame(rows).sort_values("started_at", kind="stable").reset_index(drop=True)


def test_a_model_worse_than_a_baseline_does_not_go_live_and_says_why(
    make_history: Callable[..., pd.DataFrame], tmp_path: Path, ledger: HistoryStore
) -> None:
    frame = store_frame(ledger, make_history(60, seed=3, pipeline="p"))
    registry = Registry(tmp_path, ledger=ledger)
    result = train_pipeline(frame, pipeline="p", registry=registry, model_params=CRIPPLED)
    model = result.methods["model"]
    best = result.serving.method if result.serving else ""
    assert best in ("last2", "last10")
    served = result.methods[best]
    assert model["mdape"] is not None and served["mdape"] is not None
    assert model["mdape"] > served["mdape"]  # the crippled model is worse, as it should be
    reason = result.serving.reason if result.serving else ""
    assert reason.startswith(f"model worse than {best} on the holdout: MdAPE ")
    assert reason.endswith(f"; {best} serves")
    assert f"{model['mdape'] * 100:.1f} % vs {served['mdape'] * 100:.1f} %" in reason
    assert reason in result.messages
    # the live model is the baseline, as the same estimator it was scored as
    assert result.promoted and registry.current_id("p") == result.model_id
    assert result.baselines_only
    bundle = registry.load("p").obj
    assert isinstance(bundle, ModelBundle)
    assert bundle.model.variant_ == best and not bundle.model.use_hgb
    assert bundle.model.quantile_model_ is None
    card = registry.card("p", result.model_id)
    assert card["kind"] == "baselines"
    assert card["serving"] == {"method": best, "reason": reason}
    # `planner models` reads it from the card
    (entry,) = list_models(None, tmp_path, "p")
    assert entry["serving"]["reason"] == reason
    doc = result.as_json()
    assert doc["serving"] == {"method": best, "reason": reason}
    # and planning predicts with that baseline
    predictor = Predictor.load(tmp_path, "p", frame, ledger=ledger)
    now = frame["finished_at"].max().to_pydatetime() + timedelta(minutes=1)
    (estimate,) = predictor.predict(
        [TaskQuery("collect", "a1", 100.0, {"region": "eu", "pages": 100}, 4, 4)], now
    )
    assert estimate.source.startswith(f"{best}:")


def test_a_model_better_than_the_baselines_goes_live(
    tmp_path: Path, ledger: HistoryStore, fast_params: dict[str, Any]
) -> None:
    frame = store_frame(ledger, sized_history())
    registry = Registry(tmp_path, ledger=ledger)
    result = train_pipeline(
        frame, pipeline="sized", registry=registry, model_params=fast_params, min_model_rows=100
    )
    assert result.serving is not None and result.serving.method == "model", result.messages
    model, last2 = result.methods["model"], result.methods["last2"]
    assert model["mdape"] is not None and last2["mdape"] is not None
    assert model["mdape"] < last2["mdape"]
    assert result.serving.reason.startswith("model not worse than ")
    assert not result.baselines_only
    bundle = registry.load("sized").obj
    assert bundle.model.variant_ not in ("last2", "last10")
    assert registry.card("sized", result.model_id)["serving"]["method"] == "model"


def _scores(mdape: float, mae: float) -> dict[str, float]:
    return {"mdape": mdape, "mae_s": mae}


#: last2 best on MdAPE, last10 on MAE: scores 0.40/0.40 + 120/100 = 2.2 and
#: 0.45/0.40 + 100/100 = 2.125, so last10 is the best baseline
SPLIT = {"last2": _scores(0.40, 120.0), "last10": _scores(0.45, 100.0)}
#: last2 best on both: score 2.0
LAST2 = {"last2": _scores(0.40, 100.0), "last10": _scores(0.45, 120.0)}


@pytest.mark.parametrize(
    ("baselines", "model", "best", "expected"),
    [
        (LAST2, _scores(0.40, 100.0), "last2", True),  # equal to the best baseline
        (LAST2, _scores(0.30, 80.0), "last2", True),  # better on both
        (LAST2, _scores(0.41, 95.0), "last2", True),  # MdAPE 2.5 % worse, MAE 5 % better
        (LAST2, _scores(0.41, 102.0), "last2", False),  # a little worse on both: sum 2.045
        (LAST2, _scores(0.43, 80.0), "last2", False),  # MdAPE 7.5 % worse, bought with MAE
        (SPLIT, _scores(0.41, 101.5), "last10", True),  # beats each baseline overall
        (SPLIT, _scores(0.43, 80.0), "last10", False),  # 7.5 % above the best MdAPE
        (LAST2, _scores(0.948, 14818.0), "last2", False),  # NREL: far worse
    ],
)
def test_not_worse_is_the_variant_score_within_tolerances(
    baselines: dict[str, dict[str, float]],
    model: dict[str, float],
    best: str,
    expected: bool,
) -> None:
    ok, chosen, detail = model_not_worse({"model": model, **baselines})
    assert chosen == best
    assert ok is expected, detail
    assert GATE_METRIC_TOLERANCE == 0.05


def test_train_json_says_what_serves_and_whose_bound(
    make_history: Callable[..., pd.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    store = HistoryStore(url)
    try:
        store_frame(store, make_history(25, pipeline="syn"))
    finally:
        store.close()
    models = tmp_path / "models"
    code = main(["train", "--pipeline", "syn", "--db", url, "--models", str(models), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["serving"]["method"] in ("model", "last2", "last10")
    assert doc["serving"]["reason"] in out.err
    bound = doc["bound"]
    assert set(bound) == {
        "bound_source",
        "bound_ok",
        "bound_overrun",
        "bound_ratio",
        "bound_target",
        "bound_note",
        "warning",
    }
    assert bound["bound_target"] == pytest.approx(0.05)
    assert bound["bound_ok"] is (bound["bound_overrun"] <= 0.15)
    served = doc["methods"][bound["bound_source"]]
    assert bound["bound_overrun"] == pytest.approx(served["overrun"])
    card = Registry(models, ledger=None).card("syn", doc["model_id"])
    assert card["bound_ok"] is bound["bound_ok"]
    assert card["serving"] == doc["serving"]


def test_a_baseline_serves_when_the_model_is_worse_even_with_little_history(
    make_history: Callable[..., pd.DataFrame], tmp_path: Path, ledger: HistoryStore
) -> None:
    """Baselines only (under 200 attempts): the variant picked on the validation slice
    still has to hold on the holdout, else the holdout's best baseline serves."""
    frame = store_frame(ledger, make_history(12, seed=1, pipeline="small"))
    registry = Registry(tmp_path, ledger=ledger)
    result = train_pipeline(frame, pipeline="small", registry=registry)
    assert result.baselines_only and result.serving is not None
    ok, best, _ = model_not_worse(result.methods)  # type: ignore[arg-type]
    expected = "model" if ok else best
    assert result.serving.method == expected
    bundle = registry.load("small").obj
    assert isinstance(bundle.model, DurationModel)
    if expected != "model":
        assert bundle.model.variant_ == expected
