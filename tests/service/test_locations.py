"""Where a front end's history and models are: one rule for every command."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from planner.service.locations import history_exists, models_dir, resolve_target


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PLANNER_DB", raising=False)
    monkeypatch.delenv("PLANNER_MODELS", raising=False)
    return tmp_path


def test_a_pipeline_file_keeps_its_models_with_its_history(clean_env: Path) -> None:
    folder = clean_env / "pipelines"
    folder.mkdir()
    path = folder / "p.yaml"
    raw = {"name": "p", "state_dir": "st", "steps": [{"id": "1", "command": ["true"]}]}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    target = resolve_target(str(path), db=None)
    assert target.name == "p"
    assert target.pipeline is not None
    # relative to the pipeline file, wherever the command runs from
    assert target.db_url == f"sqlite:///{folder / 'st' / 'history.db'}"
    assert target.models_dir == folder / "st" / "models"


def test_a_name_uses_the_default_state_dir(clean_env: Path) -> None:
    target = resolve_target("nightly", db=None)
    assert (target.name, target.pipeline) == ("nightly", None)
    assert target.db_url == f"sqlite:///{clean_env / '.planner' / 'history.db'}"
    assert target.models_dir == Path(".planner") / "models"
    nothing = resolve_target(None, db=None)
    assert nothing.name is None


def test_flags_then_environment_then_state_dir(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert models_dir(None, Path("/s")) == Path("/s/models")
    monkeypatch.setenv("PLANNER_MODELS", "/env/models")
    monkeypatch.setenv("PLANNER_DB", "sqlite:///env.db")
    assert models_dir(None, Path("/s")) == Path("/env/models")
    assert models_dir(Path("/flag"), Path("/s")) == Path("/flag")
    target = resolve_target("x", db=None)
    assert (target.db_url, target.models_dir) == ("sqlite:///env.db", Path("/env/models"))
    assert resolve_target("x", db="sqlite:///flag.db").db_url == "sqlite:///flag.db"


def test_history_exists_never_creates_one(clean_env: Path) -> None:
    absent = clean_env / "nope" / "history.db"
    assert not history_exists(f"sqlite:///{absent}")
    assert not absent.parent.exists()
    absent.parent.mkdir()
    absent.write_bytes(b"")
    assert history_exists(f"sqlite:///{absent}")
    assert history_exists("postgresql+psycopg://u@h/db")  # a server: asked when opened
