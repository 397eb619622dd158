"""The upper bound: above the point unless the history is constant, as wide for a new
group as new groups were, fed by the attempts in flight at the split, and flagged (with a
bound that met its target used instead, or none) when its holdout overrun is far off."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from planner.cli import main
from planner.history import HistoryStore
from planner.learning.conformal import (
    AdaptiveConformal,
    class_offsets,
    conformal_quantile,
    min_certifying,
)
from planner.learning.evaluation import Evaluation, evaluate
from planner.learning.features import attempt_features
from planner.learning.models import DurationModel
from planner.learning.predictor import Predictor
from planner.learning.registry import Registry
from planner.learning.training import BOUND_TOLERANCE, bound_warning, judge, train_pipeline
from planner.planning.model import TaskQuery
from planner.service.training import list_models

from .conftest import store_frame

START = pd.Timestamp("2026-01-01", tz="UTC")


def _frame(rows: list[dict[str, Any]], pipeline: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["pipeline"] = pipeline
    frame["started_at"] = frame["started_at"].dt.round("us")
    frame["finished_at"] = (
        frame["started_at"] + pd.to_timedelta(frame["duration_s"], unit="s")
    ).dt.round("us")
    frame["duration_s"] = (frame["finished_at"] - frame["started_at"]).dt.total_seconds()
    return frame.sort_values("started_at", kind="stable").reset_index(drop=True)


def _row(run: int, account: str, quantity: float, start: pd.Timestamp, seconds: float) -> dict:
    return {
        "run_id": f"r{run}",
        "step": "s",
        "account": account,
        "quantity": quantity,
        "params": {},
        "started_at": start,
        "duration_s": seconds,
    }


def _now(frame: pd.DataFrame) -> Any:
    return frame["finished_at"].max().to_pydatetime() + timedelta(minutes=1)


# -- a bound is above its point unless the history is constant -----------------------------


def test_bound_above_point_for_a_new_quantity_of_a_known_group(
    tmp_path: Path, ledger: HistoryStore
) -> None:
    """Noise-free work linear in its quantity (1 to 3): every repeated task is exact, so
    the calibration scores are all 0; a task at a quantity its (step, account) never ran
    rests on a history that is not constant, and its bound must be above its point."""
    rows = []
    for run in range(12):
        t0 = START + pd.Timedelta(hours=run)
        for i, account in enumerate(("a1", "a2", "a3")):
            quantity = float(1 + (run + i) % 3)
            rows.append(
                _row(run, account, quantity, t0 + pd.Timedelta(seconds=i), 0.375 * quantity)
            )
    frame = store_frame(ledger, _frame(rows, "lin"))
    train_pipeline(frame, pipeline="lin", registry=Registry(tmp_path, ledger=ledger))
    predictor = Predictor.load(tmp_path, "lin", frame, ledger=ledger)
    new, same = predictor.predict(
        [TaskQuery("s", "a1", 12.0, {}, 3, 3), TaskQuery("s", "a1", 3.0, {}, 3, 3)], _now(frame)
    )
    assert new.bound_s > new.predicted_s
    assert same.predicted_s == pytest.approx(1.125)  # its exact group: constant
    assert same.bound_s >= same.predicted_s


def test_bound_above_point_when_every_run_is_shorter_than_the_last(
    tmp_path: Path, ledger: HistoryStore
) -> None:
    """Durations shrink 3 % a run: the last-2 mean always overestimates, every score is
    negative and the calibrated offset too; the group's spread keeps the bound above."""
    rows = []
    for run in range(20):
        t0 = START + pd.Timedelta(hours=run)
        for i, account in enumerate(("a1", "a2")):
            rows.append(_row(run, account, 1.0, t0 + pd.Timedelta(seconds=i), 100 * 0.97**run))
    frame = store_frame(ledger, _frame(rows, "shrink"))
    model = DurationModel(use_hgb=False).fit(
        attempt_features(frame), frame["duration_s"].to_numpy(dtype="float64")
    )
    assert max(model.conformal_.recent_) < 0  # nothing in the calibration says "above"
    train_pipeline(frame, pipeline="shrink", registry=Registry(tmp_path, ledger=ledger))
    predictor = Predictor.load(tmp_path, "shrink", frame, ledger=ledger)
    estimates = predictor.predict(
        [TaskQuery("s", a, 1.0, {}, 2, 2) for a in ("a1", "a2")], _now(frame)
    )
    for e in estimates:
        assert e.bound_s > e.predicted_s * 1.005, e


def test_negative_offset_keeps_half_of_the_margin_over_the_point() -> None:
    conf = AdaptiveConformal(quantile=0.95).calibrate([-3.0] * 40)
    center = np.log(np.array([12.0, 10.0]))
    bounds = conf.bounds(center, np.array([10.0, 10.0]))
    assert bounds[0] == pytest.approx(10.0 * np.sqrt(1.2))  # halfway (log) from 10 to 12
    assert bounds[1] == 10.0  # center at the point: exactly the point


# -- a new group gets the width new groups had ---------------------------------------------


def test_class_offsets_calibrate_rare_classes_around_the_last2_mean() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(0.0, 0.1, 400)
    classes = np.zeros(400, dtype=np.int64)
    classes[:5] = 2  # five new-group attempts in the slice: too few to certify 95 %
    base = np.concatenate([rng.normal(0.0, 0.2, 300), np.full(40, 3.0)])
    base_classes = np.concatenate([np.zeros(300, dtype=np.int64), np.full(40, 2)])
    cal = class_offsets(scores, classes, base, base_classes, quantile=0.95)
    assert min_certifying(0.95) == 19
    assert cal.offsets[0] == pytest.approx(conformal_quantile(scores[classes == 0], 0.95))
    assert not cal.on_baseline[0]
    assert cal.on_baseline[2] and cal.offsets[2] == pytest.approx(3.0)
    # the group class has no score at all: it borrows from itself and broader classes
    assert cal.on_baseline[1] and cal.offsets[1] == pytest.approx(3.0)
    assert "new +3.00 (40, around last-2)" in cal.describe()


def test_a_new_account_is_bounded_as_new_accounts_ran(tmp_path: Path, ledger: HistoryStore) -> None:
    """Each account's first job runs 20x its later ones (a cold start): a pooled bound
    calibrated on repeated jobs would cover 1.3x; the first job of a new account must get
    a bound that covers what first jobs took."""
    rng = np.random.default_rng(1)
    rows = []
    for k in range(40):
        account = f"u{k}"
        t = START + pd.Timedelta(hours=3 * k)
        for j in range(8):
            seconds = 60.0 * (20.0 if j == 0 else 1.0) * float(np.exp(rng.normal(0, 0.1)))
            rows.append(_row(k * 8 + j, account, 1.0, t, seconds))
            t += pd.Timedelta(seconds=seconds + 5)
    frame = store_frame(ledger, _frame(rows, "cold"))
    train_pipeline(
        frame, pipeline="cold", registry=Registry(tmp_path, ledger=ledger), min_model_rows=10**6
    )
    predictor = Predictor.load(tmp_path, "cold", frame, ledger=ledger)
    new, known = predictor.predict(
        [TaskQuery("s", "newcomer", 1.0, {}, 1, 1), TaskQuery("s", "u39", 1.0, {}, 1, 1)],
        _now(frame),
    )
    assert new.bound_s >= 20 * 60.0
    assert known.bound_s < 3 * known.predicted_s


# -- the online bound sees the attempts in flight at the split -----------------------------


def _in_flight_history(late_finish: bool) -> pd.DataFrame:
    """One account's jobs every 10 minutes (60 s each), and one 50x job started just
    before the holdout that finishes soon after it starts (or only after every test
    start when ``late_finish``)."""
    rows = [
        _row(i, "a", 1.0, START + pd.Timedelta(minutes=10 * i), 60.0 * (1 + 0.05 * (i % 3)))
        for i in range(100)
    ]
    # the holdout is the last 31 of 101 starts: jobs 69 to 99, from minute 690
    long_s = 3000.0 if not late_finish else 10 * 60 * 40.0
    rows.append(_row(999, "b", 1.0, START + pd.Timedelta(minutes=685), long_s))
    return _frame(rows, "flight")


def test_attempts_in_flight_at_the_split_feed_the_online_bound() -> None:
    params = {"use_hgb": False, "gamma": 0.0}
    soon = evaluate(
        _in_flight_history(False), holdout=0.3, make_model=lambda _: DurationModel(**params)
    )
    late = evaluate(
        _in_flight_history(True), holdout=0.3, make_model=lambda _: DurationModel(**params)
    )
    assert soon.in_flight == late.in_flight == 1
    assert soon.rows_test == late.rows_test
    # test job i starts at minute 690 + 10 i; the long job ends at minute 735 (or never
    # before the last test start): until then both holdouts are bounded alike, the next
    # start sees its score (the test part's own jobs are the same in both)
    b_soon, b_late = soon.predictions["last2"][1], late.predictions["last2"][1]
    assert np.allclose(b_soon[:5], b_late[:5])
    assert b_soon[5] > 10 * b_late[5]


# -- far from target: flagged, and another bound used or none ------------------------------


def _evaluation(methods: dict[str, dict[str, float]]) -> Evaluation:
    full = {
        m: {"mae_s": 10.0, "mdape": 0.1, "mean_abs_log": 0.1, "n": 100, **v}
        for m, v in methods.items()
    }
    return Evaluation(
        rows_train=300,
        rows_test=100,
        methods=full,
        halves=[],
        per_step={},
        variant="residual",
        baselines_only=False,
    )


def test_a_bound_far_from_target_is_replaced_by_the_tightest_that_met_it() -> None:
    ev = _evaluation(
        {
            "model": {"overrun": 0.40, "median_bound_ratio": 0.8},
            "last2": {"overrun": 0.06, "median_bound_ratio": 3.0},
            "last10": {"overrun": 0.14, "median_bound_ratio": 2.0},
        }
    )
    serving = judge(ev, 0.95)
    assert serving.method == "model"
    assert serving.bound_source == "last10" and serving.bound_ok is True
    assert serving.bound_overrun == pytest.approx(0.14)
    assert serving.model_overrides() == {"bound": "last10"}
    assert serving.bound_note is not None
    assert "model's bound overran 40.0 % of the holdout (target 5.0 %" in serving.bound_note
    assert "last10's bound serves" in serving.bound_note


def test_a_served_baseline_can_take_the_other_baselines_bound() -> None:
    ev = _evaluation(
        {
            "model": {"mdape": 0.9, "overrun": 0.01, "median_bound_ratio": 9.0},
            "last2": {"mdape": 0.1, "overrun": 0.50, "median_bound_ratio": 0.9},
            "last10": {"mdape": 0.2, "overrun": 0.04, "median_bound_ratio": 2.5},
        }
    )
    serving = judge(ev, 0.95)
    assert serving.method == "last2"
    assert serving.bound_source == "last10"
    assert serving.model_overrides() == {"use_hgb": False, "variant": "last2", "bound": "last10"}


def test_the_bound_of_a_baseline_is_what_serves_with_bound_param(
    tmp_path: Path, ledger: HistoryStore
) -> None:
    rng = np.random.default_rng(2)
    rows = [
        _row(
            i,
            f"a{i % 5}",
            1.0,
            START + pd.Timedelta(minutes=5 * i),
            30 * np.exp(rng.normal(0, 0.3)),
        )
        for i in range(300)
    ]
    frame = store_frame(ledger, _frame(rows, "b"))
    X, y = attempt_features(frame), frame["duration_s"].to_numpy(dtype="float64")
    fast = {"max_iter": 20, "quantile_max_iter": 20}
    own = DurationModel(**fast).fit(X, y)
    on_last2 = DurationModel(bound="last2", **fast).fit(X, y)
    base = DurationModel(use_hgb=False, variant="last2", **fast).fit(X, y)
    assert own.quantile_model_ is not None and on_last2.quantile_model_ is None
    point, center = on_last2.predict_both(X)
    base_point, base_center = base.predict_both(X)
    assert np.allclose(point, own.predict_log(X))  # the point is the model's
    # the center is the baseline's wherever neither point's floor lifts it
    free = (center > np.maximum(point, base_point) + 0.2) & (base_center > base_point + 0.2)
    assert free.sum() > 100
    assert np.allclose(center[free], base_center[free])
    with pytest.raises(ValueError, match="bound"):
        DurationModel(bound="hgb").fit(X, y)


def test_bound_warning_reads_the_card() -> None:
    card = {
        "model_id": "m1",
        "bound_ok": False,
        "bound_source": "model",
        "bound_overrun": 0.993,
        "bound_target": 0.05,
        "bound_ratio": 0.22,
    }
    warning = bound_warning(card)
    assert warning is not None and "\n" not in warning
    assert "model m1: no calibrated upper bound" in warning
    assert "overran 99.3 % of the holdout, target 5.0 %, bound/actual 0.22" in warning
    assert bound_warning({**card, "bound_ok": True}) is None
    assert bound_warning({"model_id": "old"}) is None  # a card from before the fields
    assert BOUND_TOLERANCE == 3.0


def _burst_history() -> pd.DataFrame:
    """300 regular jobs of 3 accounts, then a burst of 150 jobs that all start at once and
    run 30x longer: nothing finishes in time to tell the bounds."""
    rng = np.random.default_rng(3)
    rows = [
        _row(
            i,
            f"a{i % 3}",
            1.0,
            START + pd.Timedelta(minutes=5 * i),
            60 * np.exp(rng.normal(0, 0.1)),
        )
        for i in range(300)
    ]
    burst = START + pd.Timedelta(minutes=5 * 300 + 30)
    rows += [
        _row(1000, f"a{i % 3}", 1.0, burst, 1800 * np.exp(rng.normal(0, 0.1))) for i in range(150)
    ]
    return _frame(rows, "burst")


def test_no_bound_met_its_target_is_flagged_in_the_card_and_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    store = HistoryStore(url)
    try:
        store_frame(store, _burst_history())
    finally:
        store.close()
    models = tmp_path / "models"
    code = main(["train", "--pipeline", "burst", "--db", url, "--models", str(models), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    for method in ("model", "last2", "last10"):
        assert doc["methods"][method]["overrun"] > 0.9
    bound = doc["bound"]
    assert bound["bound_ok"] is False and bound["bound_overrun"] > 0.9
    assert "no bound met its target on the holdout" in bound["bound_note"]
    assert bound["warning"] == bound_warning(
        Registry(models, ledger=None).card("burst", doc["model_id"])
    )
    assert f"warning: {bound['warning']}" in out.err
    (entry,) = list_models(None, models, "burst")  # what `planner models` shows
    assert entry["bound_warning"] == bound["warning"] and entry["bound_ok"] is False
    assert "135 of 135 test attempts started before any attempt finished" in out.err
    # the table says it too, on its own line
    code = main(["train", "--pipeline", "burst", "--db", url, "--models", str(models)])
    text = capsys.readouterr().out
    assert code == 0
    assert "warning: model " in text and "no calibrated upper bound" in text


@pytest.mark.realdata
def test_nrel_a_baseline_serves_and_its_bound_holds(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'nrel.db'}"
    mapping = (
        "step=partition,account=user,quantity=processors_req,started_at=start_time,"
        "finished_at=end_time,duration_s=run_time,status=state,param.req=wallclock_req"
    )
    source = str(shared_data / "nrel-eagle-sample.csv")
    assert main(["import", "csv", source, "--pipeline", "nrel", "--db", db, "--map", mapping]) == 0
    capsys.readouterr()
    models = str(tmp_path / "models")
    code = main(["train", "--pipeline", "nrel", "--db", db, "--models", models, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    model, last2 = doc["methods"]["model"], doc["methods"]["last2"]
    assert model["mdape"] > last2["mdape"]  # the model is worse here: it must not serve
    assert doc["serving"]["method"] in ("last2", "last10")
    assert doc["bound"]["bound_ok"] is True
    assert doc["bound"]["bound_overrun"] <= 0.05
    # 297 of the 300 test jobs start in the same second: no feedback could arrive
    assert "297 of 300 test attempts started before any attempt finished" in out.err
