"""Fixtures shared by every area: paths, pipeline files, and the rule for missing tools."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest_plugins = ["tests.pg", "tests.dashboard_history"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: bool, reason: str) -> None:
    """Skip when ``condition`` is false, but fail in CI, where everything must run."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def shared_data() -> Path:
    """The folder of real traces beside the repo (skips outside CI when absent)."""
    need(SHARED_DATA.is_dir(), f"real traces not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[..., Path]:
    """Write a pipeline mapping to a file in ``tmp_path`` (YAML, JSON or TOML by suffix)."""

    def write(data: dict[str, Any] | str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        elif name.endswith(".json"):
            import json

            path.write_text(json.dumps(data), encoding="utf-8")
        elif name.endswith(".toml"):
            path.write_text(_toml(data), encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


def _toml(data: dict[str, Any]) -> str:
    """A tiny TOML writer for the test pipelines (tables and arrays of tables)."""
    import json

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if k != "steps"]
    for step in data.get("steps", []):
        lines.append("[[steps]]")
        lines.extend(f"{k} = {value(v)}" for k, v in step.items())
    return "\n".join(lines) + "\n"
