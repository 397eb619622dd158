"""The model registry: save, promote, load with checks before unpickling, list, CLI.

Every registry here has a real SQLite history as its ledger (the attack on the card and
the ledger itself: test_registry_trust.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from planner.cli import main
from planner.clock import FakeClock
from planner.errors import ModelError
from planner.history import HistoryStore
from planner.learning.registry import (
    CARD_FILE,
    CURRENT_FILE,
    MODEL_FILE,
    Registry,
    library_versions,
)


class _Booby:
    """Unpickling this object creates the directory ``marker``: proof that a load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _card(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "test",
        "features": ["quantity"],
        "training": {
            "rows": 1234,
            "start": "2026-01-01T00:00:00+00:00",
            "end": "2026-01-02T00:00:00+00:00",
        },
        "metrics": {"model": {"mdape": 0.1, "mae_s": 12.0}},
        "quantile": 0.95,
        "notes": "",
        **extra,
    }


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[HistoryStore]:
    store = HistoryStore(f"sqlite:///{tmp_path / 'state' / 'history.db'}")
    yield store
    store.close()


@pytest.fixture
def registry(tmp_path: Path, ledger: HistoryStore) -> Registry:
    return Registry(tmp_path / "models", ledger=ledger, clock=FakeClock())


def _fitted() -> LinearRegression:
    x = np.array([[1.0], [2.0], [3.0]])
    return LinearRegression().fit(x, np.array([2.0, 4.0, 6.0]))


def test_round_trip_keeps_the_object_and_writes_a_full_card(registry: Registry) -> None:
    model_id = registry.save("etl", _fitted(), _card())
    folder = registry.root / "etl" / model_id
    assert (folder / MODEL_FILE).is_file()
    card = json.loads((folder / CARD_FILE).read_text())
    assert card["pipeline"] == "etl"
    assert card["model_id"] == model_id
    assert card["kind"] == "test" and card["training"]["rows"] == 1234
    assert card["versions"] == library_versions()
    assert registry.ledger is not None
    assert registry.ledger.model_digest("etl", model_id) == card["sha256"]
    assert set(card["versions"]) >= {"python", "sklearn", "numpy", "pandas", "joblib"}
    assert len(card["sha256"]) == 64 and model_id.endswith(card["sha256"][:8])
    assert model_id.startswith("20260101T000000Z-")

    assert registry.current_id("etl") is None
    registry.promote("etl", model_id)
    assert (registry.root / "etl" / CURRENT_FILE).read_text().strip() == model_id
    assert registry.current_id("etl") == model_id
    assert not [p for p in (registry.root / "etl").iterdir() if p.name.startswith(".")]

    loaded = registry.load("etl")
    assert loaded.model_id == model_id
    assert loaded.card["sha256"] == card["sha256"]
    assert loaded.obj.predict(np.array([[4.0]]))[0] == pytest.approx(8.0)


def test_load_by_id_and_promotion_switches_current(tmp_path: Path, ledger: HistoryStore) -> None:
    clock = FakeClock()
    registry = Registry(tmp_path / "models", ledger=ledger, clock=clock)
    first = registry.save("p", {"v": 1}, _card())
    clock.advance(60)
    second = registry.save("p", {"v": 2}, _card())
    assert first < second
    registry.promote("p", first)
    assert registry.load("p").obj == {"v": 1}
    registry.promote("p", second)
    assert registry.load("p").obj == {"v": 2}
    assert registry.load("p", first).obj == {"v": 1}


def test_same_second_same_object_gets_a_distinct_id(registry: Registry) -> None:
    first = registry.save("p", {"v": 1}, _card())
    second = registry.save("p", {"v": 1}, _card())
    assert second == f"{first}.2"
    assert registry.card("p", second)["model_id"] == second
    assert registry.load("p", second).obj == {"v": 1}


def _booby_trapped(registry: Registry, tmp_path: Path) -> tuple[str, Path, Path]:
    marker = tmp_path / "unpickled"
    model_id = registry.save("p", _Booby(marker), _card())
    registry.promote("p", model_id)
    assert not marker.exists()  # dumping runs nothing
    return model_id, registry.root / "p" / model_id / MODEL_FILE, marker


def test_the_crafted_pickle_runs_code_when_loaded(registry: Registry, tmp_path: Path) -> None:
    """Control for the tests below: an intact file of this kind does run code on load."""
    _, _, marker = _booby_trapped(registry, tmp_path)
    registry.load("p")
    assert marker.is_dir()


@pytest.fixture
def no_joblib_load(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def spy(path: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(Path(path))
        raise AssertionError("joblib.load must not be called")

    monkeypatch.setattr(joblib, "load", spy)
    return calls


def test_a_tampered_file_is_never_unpickled(
    registry: Registry, tmp_path: Path, no_joblib_load: list[Path]
) -> None:
    _, path, marker = _booby_trapped(registry, tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # change one byte
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as info:
        registry.load("p")
    assert info.value.where == str(path)
    assert "sha256" in info.value.what and "\n" not in str(info.value)
    assert not marker.exists()
    assert no_joblib_load == []


def test_a_truncated_file_is_refused(
    registry: Registry, tmp_path: Path, no_joblib_load: list[Path]
) -> None:
    _, path, marker = _booby_trapped(registry, tmp_path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ModelError, match="truncated"):
        registry.load("p")
    assert not marker.exists() and no_joblib_load == []


def test_a_version_mismatch_is_refused_before_unpickling(
    registry: Registry, tmp_path: Path, no_joblib_load: list[Path]
) -> None:
    model_id, path, marker = _booby_trapped(registry, tmp_path)
    card_path = path.parent / CARD_FILE
    card = json.loads(card_path.read_text())
    card["versions"]["sklearn"] = "0.24.2"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"sklearn 0\.24\.2"):
        registry.load("p", model_id)
    card["versions"]["sklearn"] = library_versions()["sklearn"]
    major, minor = library_versions()["numpy"].split(".")[:2]
    card["versions"]["numpy"] = f"{major}.{int(minor) + 1}.0"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="numpy"):
        registry.load("p", model_id)
    assert not marker.exists() and no_joblib_load == []


def test_a_patch_release_difference_is_accepted(registry: Registry) -> None:
    model_id = registry.save("p", {"v": 1}, _card())
    card_path = registry.root / "p" / model_id / CARD_FILE
    card = json.loads(card_path.read_text())
    major, minor = library_versions()["sklearn"].split(".")[:2]
    card["versions"]["sklearn"] = f"{major}.{minor}.999"
    card_path.write_text(json.dumps(card))
    assert registry.load("p", model_id).obj == {"v": 1}


def test_missing_current_missing_file_and_bad_card(
    registry: Registry, tmp_path: Path, no_joblib_load: list[Path]
) -> None:
    with pytest.raises(ModelError, match="no current model"):
        registry.load("nothing")
    _, path, marker = _booby_trapped(registry, tmp_path)

    card_path = path.parent / CARD_FILE
    good_card = card_path.read_text()
    card_path.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON") as info:
        registry.load("p")
    assert info.value.where == str(card_path)
    card_path.write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        registry.load("p")
    card_path.write_text(good_card)

    path.unlink()
    with pytest.raises(ModelError, match="model file missing"):
        registry.load("p")
    with pytest.raises(ModelError, match="no such model"):
        registry.promote("p", "20200101T000000Z-00000000")
    assert not marker.exists() and no_joblib_load == []


def test_try_load_turns_refusals_into_warnings(
    registry: Registry, tmp_path: Path, no_joblib_load: list[Path]
) -> None:
    assert registry.try_load("p") == (None, None)  # nothing trained yet: no warning
    _, path, marker = _booby_trapped(registry, tmp_path)
    path.write_bytes(path.read_bytes() + b"x")
    model, warning = registry.try_load("p")
    assert model is None and warning is not None
    assert warning.startswith(f"{path}: sha256") and "\n" not in warning
    assert not marker.exists() and no_joblib_load == []


def test_names_cannot_escape_the_registry(registry: Registry) -> None:
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ModelError):
            registry.load("p", bad)
        with pytest.raises(ModelError):
            registry.save(bad, {"v": 1}, _card())
    (registry.root / "p").mkdir(parents=True)
    (registry.root / "p" / CURRENT_FILE).write_text("../../etc\n")
    with pytest.raises(ModelError, match="not a valid name"):
        registry.load("p")


def test_a_corrupt_pickle_recorded_as_saved_is_a_model_error(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_dump(obj: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"not a pickle at all")  # e.g. a bad disk while saving

    monkeypatch.setattr(joblib, "dump", broken_dump)
    model_id = registry.save("p", {"v": 1}, _card())  # its digest is recorded as written
    with pytest.raises(ModelError, match="cannot unpickle"):
        registry.load("p", model_id)


def _two_pipelines(root: Path, ledger: HistoryStore) -> tuple[str, str, str]:
    clock = FakeClock()
    registry = Registry(root, ledger=ledger, clock=clock)
    a1 = registry.save("alpha", {"v": 1}, _card())
    clock.advance(3600)
    a2 = registry.save("alpha", {"v": 2}, _card(kind="hgb"))
    b1 = registry.save("beta", {"v": 3}, _card())
    registry.promote("alpha", a1)
    (root / "beta" / b1 / CARD_FILE).write_text("garbage")
    return a1, a2, b1


def test_list_reports_every_model_and_the_live_one(tmp_path: Path, ledger: HistoryStore) -> None:
    root = tmp_path / "models"
    a1, a2, b1 = _two_pipelines(root, ledger)
    registry = Registry(root, ledger=None)  # listing reads cards only: no history needed
    entries = registry.list()
    assert [(e["pipeline"], e["id"], e["current"]) for e in entries] == [
        ("alpha", a1, True),
        ("alpha", a2, False),
        ("beta", b1, False),
    ]
    assert entries[1]["kind"] == "hgb" and entries[1]["sha256"]
    assert "not valid JSON" in entries[2]["error"]
    assert [e["id"] for e in registry.list("beta")] == [b1]
    assert registry.list("gamma") == []
    assert Registry(tmp_path / "absent", ledger=None).list() == []


def test_models_command_json_and_table(
    tmp_path: Path,
    ledger: HistoryStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "models"
    a1, a2, b1 = _two_pipelines(root, ledger)
    db = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    monkeypatch.delenv("PLANNER_DB", raising=False)
    assert main(["models", "--models", str(root), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["root"] == str(root) and "history" not in document
    assert [(m["id"], m["current"]) for m in document["models"]] == [
        (a1, True),
        (a2, False),
        (b1, False),
    ]
    assert main(["models", "--models", str(root), "--pipeline", "alpha", "--json"]) == 0
    assert [m["id"] for m in json.loads(capsys.readouterr().out)["models"]] == [a1, a2]

    monkeypatch.setenv("PLANNER_MODELS", str(root))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["models", "--pipeline", "alpha"]) == 0
    out = capsys.readouterr().out
    assert a1 in out and a2 in out and "10.0%" in out and "12.0s" in out  # MAE as durations
    assert "1,234" in out and "2026-01-01 to 2026-01-02" in out

    path = root / "alpha" / a2 / MODEL_FILE
    path.write_bytes(path.read_bytes() + b"!")
    assert main(["models", "--models", str(root), "--db", db, "--verify", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["history"] == db
    checked = {m["id"]: (m["verified"], m["problem"]) for m in document["models"]}
    assert checked[a1] == (True, None)
    assert checked[a2][0] is False and "sha256" in checked[a2][1]
    assert checked[b1][0] is False and "not valid JSON" in checked[b1][1]
    assert main(["models", "--models", str(root), "--db", db, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "does not match" in out and "trusted" in out
    assert f"1 of 3 models trusted: digest recorded in the history {db}" in out

    # another history never saw these models: none is trusted
    other = f"sqlite:///{tmp_path / 'other.db'}"
    HistoryStore(other).close()
    assert main(["models", "--models", str(root), "--db", other, "--verify", "--json"]) == 0
    problems = {m["id"]: m["problem"] for m in json.loads(capsys.readouterr().out)["models"]}
    assert "digest not recorded in the history" in problems[a1]
    assert "retrain with planner train" in problems[a1]

    assert main(["models", "--models", str(tmp_path / "none")]) == 0
    assert "no models" in capsys.readouterr().out
