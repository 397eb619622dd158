"""The memory keys of a pipeline file: a step's ``memory_limit``, the pipeline's
``memory_pressure``, and ``memory`` as an error class retry policies may name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from planner import defaults
from planner.config import check_pipeline_file, load_pipeline
from planner.config.models import KNOWN_ERROR_CLASSES

Write = Callable[..., Path]


def pipeline_with(step: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    first = {"id": "1", "command": ["true"], **(step or {})}
    data: dict[str, Any] = {"name": "p", "steps": [first]}
    data.update(extra)
    return data


def errors_of(path: Path) -> list[tuple[str, str]]:
    pipeline, issues = check_pipeline_file(path)
    assert pipeline is None, "expected the pipeline to be invalid"
    return [(i.loc, i.msg) for i in issues]


@pytest.mark.parametrize(
    ("written", "size"),
    [("512MB", 512_000_000), ("2GiB", 2 * 1024**3), ("1.5GiB", int(1.5 * 1024**3)), (1024, 1024)],
)
def test_memory_limit_is_a_size(write_pipeline: Write, written: object, size: int) -> None:
    pipeline = load_pipeline(write_pipeline(pipeline_with({"memory_limit": written})))
    assert pipeline.steps[0].memory_limit == size


def test_memory_limit_and_pressure_are_off_by_default(write_pipeline: Write) -> None:
    pipeline = load_pipeline(write_pipeline(pipeline_with()))
    assert pipeline.steps[0].memory_limit is None
    assert pipeline.memory_pressure is None


@pytest.mark.parametrize("bad", ["lots", 0, -5, "0MB", True])
def test_a_bad_memory_limit_names_the_step_and_value(write_pipeline: Write, bad: object) -> None:
    errors = errors_of(write_pipeline(pipeline_with({"memory_limit": bad})))
    assert [loc for loc, _ in errors] == ["steps[0].memory_limit"]


def test_pressure_defaults_come_from_defaults(write_pipeline: Write) -> None:
    pipeline = load_pipeline(write_pipeline(pipeline_with(memory_pressure={})))
    pressure = pipeline.memory_pressure
    assert pressure is not None
    assert pressure.threshold == defaults.PRESSURE_THRESHOLD == 0.8
    assert pressure.check_every == defaults.PRESSURE_CHECK_EVERY_S == 1.0
    assert pressure.max_pause == defaults.PRESSURE_MAX_PAUSE_S == 300.0
    assert pressure.cleanup_timeout == defaults.PRESSURE_CLEANUP_TIMEOUT_S
    assert pressure.cleanup_command is None


def test_pressure_keys_in_every_form(write_pipeline: Write) -> None:
    pressure = {
        "threshold": 0.9,
        "check_every": 0.5,
        "max_pause": "2m",
        "cleanup_command": ["pkill", "-f", "chrome", 9],
        "cleanup_timeout": "30s",
    }
    for name in ("p.yaml", "p.json", "p.toml"):
        loaded = load_pipeline(write_pipeline(pipeline_with(memory_pressure=pressure), name))
        assert loaded.memory_pressure is not None
        assert loaded.memory_pressure.threshold == 0.9
        assert loaded.memory_pressure.check_every == 0.5
        assert loaded.memory_pressure.max_pause == 120.0
        assert loaded.memory_pressure.cleanup_command == ("pkill", "-f", "chrome", "9")
        assert loaded.memory_pressure.cleanup_timeout == 30.0


@pytest.mark.parametrize(
    ("pressure", "loc", "says"),
    [
        ({"threshold": 0}, "memory_pressure.threshold", "greater than 0"),
        ({"threshold": 1.5}, "memory_pressure.threshold", "less than or equal to 1"),
        ({"threshold": True}, "memory_pressure.threshold", "must be a number"),
        ({"check_every": "0s"}, "memory_pressure.check_every", "positive duration"),
        ({"max_pause": -1}, "memory_pressure.max_pause", "positive duration"),
        ({"cleanup_command": []}, "memory_pressure.cleanup_command", "cleanup_command is empty"),
        ({"cleanup_command": "pkill chrome"}, "memory_pressure.cleanup_command", "tuple"),
        ({"treshold": 0.5}, "memory_pressure.treshold", "unknown key 'treshold'"),
    ],
)
def test_bad_pressure_keys_are_reported_with_their_path(
    write_pipeline: Write, pressure: dict[str, Any], loc: str, says: str
) -> None:
    errors = errors_of(write_pipeline(pipeline_with(memory_pressure=pressure)))
    assert [e for e in errors if e[0] == loc and says in e[1]], errors


def test_memory_is_a_known_error_class_for_retries(write_pipeline: Write) -> None:
    assert "memory" in KNOWN_ERROR_CLASSES
    retry = {"on": {"memory": {"max_retries": 2, "backoff": "fixed", "base": "30s"}}}
    pipeline = load_pipeline(write_pipeline(pipeline_with({"retry": retry})))
    policy = pipeline.retry_policy(pipeline.steps[0])
    assert policy is not None and policy.action_for("memory").max_retries == 2
    # a misspelt class is still refused, and the message lists memory among the known
    errors = errors_of(write_pipeline(pipeline_with({"retry": {"on": {"memroy": {}}}})))
    assert len(errors) == 1
    loc, msg = errors[0]
    assert loc == "steps[0].retry.on.memroy" and "memory" in msg.split("known:")[1]
