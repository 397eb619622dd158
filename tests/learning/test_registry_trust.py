"""Trust: a model is loaded only when the history records its file's digest.

The attack: whoever can write the models folder replaces model.joblib with a pickle that
runs code, and rewrites card.json so that its sha256 and size match. The card then vouches
for the file; the digest recorded in the history does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest

from planner.clock import FakeClock
from planner.errors import ModelError, StoreError
from planner.history import HistoryStore
from planner.learning.models import ModelBundle
from planner.learning.predictor import Predictor
from planner.learning.registry import CARD_FILE, CURRENT_FILE, MODEL_FILE, Registry
from planner.learning.training import train_pipeline


class _Evil:
    """Unpickling this object writes the file ``marker``: proof that a load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        code = f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('pwned')"
        return (exec, (code,))


def _store(path: Path) -> HistoryStore:
    return HistoryStore(f"sqlite:///{path}")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[HistoryStore]:
    store = _store(tmp_path / "state" / "history.db")
    yield store
    store.close()


@pytest.fixture
def frame(make_history: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    return make_history(30, seed=3, quantities=None, noise=0.05, pipeline="p")


def _train(frame: pd.DataFrame, root: Path, ledger: HistoryStore | None, fast: dict) -> str:
    registry = Registry(root, ledger=ledger)
    result = train_pipeline(
        frame, pipeline="p", registry=registry, model_params=fast, min_model_rows=100
    )
    assert result.promoted and registry.current_id("p") == result.model_id
    return result.model_id


@pytest.fixture
def joblib_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path joblib.load is called with (it still loads)."""
    calls: list[Path] = []
    real = joblib.load

    def spy(path: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(joblib, "load", spy)
    return calls


def test_the_genuine_model_is_recorded_and_loads(
    frame: pd.DataFrame, tmp_path: Path, ledger: HistoryStore, fast_params: dict
) -> None:
    root = tmp_path / "models"
    model_id = _train(frame, root, ledger, fast_params)
    card = json.loads((root / "p" / model_id / CARD_FILE).read_text())
    (row,) = ledger.trained_models("p")
    assert (row.model_id, row.sha256, row.size) == (model_id, card["sha256"], card["size"])
    assert row.kind == "model" and row.promoted_at is not None
    loaded = Registry(root, ledger=ledger).load("p")
    assert isinstance(loaded.obj, ModelBundle) and loaded.model_id == model_id
    predictor = Predictor.load(root, "p", frame, ledger=ledger)
    assert predictor.mode == "model" and predictor.model_id == model_id
    assert predictor.warnings == []


def test_a_replaced_pickle_with_a_rewritten_card_is_never_unpickled(
    frame: pd.DataFrame,
    tmp_path: Path,
    ledger: HistoryStore,
    fast_params: dict,
    joblib_loads: list[Path],
) -> None:
    root = tmp_path / "models"
    model_id = _train(frame, root, ledger, fast_params)
    path = root / "p" / model_id / MODEL_FILE
    marker = tmp_path / "marker"
    # the attacker's file, and a card that vouches for it
    joblib.dump(_Evil(marker), path)
    card_path = path.parent / CARD_FILE
    card = json.loads(card_path.read_text())
    card.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=path.stat().st_size)
    card_path.write_text(json.dumps(card))

    registry = Registry(root, ledger=ledger)
    with pytest.raises(ModelError) as caught:
        registry.load("p")
    assert caught.value.where == str(path)
    what = caught.value.what
    assert "differs from the digest recorded in the history" in what
    assert ledger.url in what and "retrain with planner train" in what
    assert "\n" not in str(caught.value)
    with pytest.raises(ModelError, match="recorded in the history"):
        registry.verify("p", model_id)

    predictor = Predictor.load(root, "p", frame, ledger=ledger)
    assert predictor.mode == "baselines" and predictor.model_id is None
    (warning,) = predictor.warnings
    assert model_id in warning and "recorded in the history" in warning
    assert warning.endswith("using baselines") and "\n" not in warning
    assert not marker.exists()
    assert joblib_loads == []

    # control: the file does run code when unpickled, so the refusal above mattered
    joblib.load(path)
    assert marker.read_text() == "pwned"


def test_a_model_folder_trained_elsewhere_is_refused(
    frame: pd.DataFrame,
    tmp_path: Path,
    ledger: HistoryStore,
    fast_params: dict,
    joblib_loads: list[Path],
) -> None:
    elsewhere = _store(tmp_path / "elsewhere.db")
    try:
        foreign = _train(frame, tmp_path / "their-models", elsewhere, fast_params)
    finally:
        elsewhere.close()
    root = tmp_path / "models"
    (root / "p").mkdir(parents=True)
    shutil.copytree(tmp_path / "their-models" / "p" / foreign, root / "p" / foreign)
    (root / "p" / CURRENT_FILE).write_text(foreign + "\n")

    registry = Registry(root, ledger=ledger)
    with pytest.raises(ModelError) as caught:
        registry.load("p")
    assert caught.value.where == str(root / "p" / foreign / MODEL_FILE)
    assert caught.value.what.startswith(f"digest not recorded in the history {ledger.url}")
    assert "(trained elsewhere or folder tampered)" in caught.value.what
    with pytest.raises(ModelError, match="digest not recorded"):
        registry.promote("p", foreign)
    predictor = Predictor.load(root, "p", frame, ledger=ledger)
    assert predictor.mode == "baselines"
    assert "digest not recorded in the history" in predictor.warnings[0]
    assert joblib_loads == []
    # retraining here makes a trusted model live again
    retrained = _train(frame, root, ledger, fast_params)
    assert Predictor.load(root, "p", frame, ledger=ledger).model_id == retrained


def test_without_a_history_nothing_is_saved_promoted_or_loaded(
    frame: pd.DataFrame,
    tmp_path: Path,
    ledger: HistoryStore,
    fast_params: dict,
    joblib_loads: list[Path],
) -> None:
    root = tmp_path / "models"
    model_id = _train(frame, root, ledger, fast_params)
    bare = Registry(root, ledger=None)
    assert [e["id"] for e in bare.list("p")] == [model_id]  # cards can still be listed
    assert bare.current_id("p") == model_id
    for attempt in (
        lambda: bare.load("p"),
        lambda: bare.verify("p", model_id),
        lambda: bare.promote("p", model_id),
        lambda: bare.save("p", {"v": 1}, {"kind": "x"}),
    ):
        with pytest.raises(ModelError, match="no history to check the model against"):
            attempt()
    assert sorted(p.name for p in (root / "p").iterdir()) == sorted([CURRENT_FILE, model_id])
    predictor = Predictor.load(root, "p", frame, ledger=None)
    assert predictor.mode == "baselines"
    assert "no history to check the model against" in predictor.warnings[0]
    assert joblib_loads == []


def test_a_failed_record_removes_the_saved_folder(tmp_path: Path, ledger: HistoryStore) -> None:
    clock = FakeClock()
    registry = Registry(tmp_path / "models", ledger=ledger, clock=clock)
    obj = {"v": 1}
    probe = tmp_path / "probe.joblib"
    joblib.dump(obj, probe)
    digest = hashlib.sha256(probe.read_bytes()).hexdigest()
    model_id = f"{clock.now():%Y%m%dT%H%M%S}Z-{digest[:8]}"
    # another folder sharing this history saved a different file under the same id
    ledger.record_model("p", model_id, "0" * 64, clock.now())
    with pytest.raises(StoreError, match="recorded already with another digest"):
        registry.save("p", obj, {"kind": "x"})
    assert list((tmp_path / "models" / "p").iterdir()) == []  # nothing untrusted stays
    assert ledger.model_digest("p", model_id) == "0" * 64  # and the record is unchanged


def test_an_interrupted_record_removes_the_saved_folder(
    tmp_path: Path, ledger: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ledger, "record_model", interrupted)
    registry = Registry(tmp_path / "models", ledger=ledger)
    with pytest.raises(KeyboardInterrupt):
        registry.save("p", {"v": 1}, {"kind": "x"})
    assert os.listdir(tmp_path / "models" / "p") == []
