"""Fixtures of the runner's tests: pipelines in a temp folder, a store, psutil helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from planner.config import Pipeline
from planner.config.loader import parse_pipeline
from planner.history import HistoryStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Callable[..., Pipeline]:
    """A validated pipeline from a mapping; state dir and files under ``tmp_path``."""

    def make(**raw: Any) -> Pipeline:
        raw.setdefault("name", "t")
        raw.setdefault("state_dir", str(tmp_path / "state"))
        pipeline, issues = parse_pipeline(raw, base_dir=tmp_path, source=tmp_path / "p.yaml")
        assert not issues, issues
        assert pipeline is not None
        return pipeline

    return make


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    """The history the runner writes to: a new SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    else:
        url = request.getfixturevalue("pg_fresh_url")
    with HistoryStore(url) as opened:
        yield opened


def live(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped counts as dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def planner_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    """``python -m planner ARGS`` as a real process."""
    return subprocess.Popen(
        [sys.executable, "-m", "planner", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
