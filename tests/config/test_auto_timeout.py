"""The pipeline-level ``auto_timeout`` key and the defaults it shares with the rest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from planner import defaults
from planner.config import check_pipeline_file, load_pipeline

Write = Callable[..., Path]


def minimal(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "p",
        "steps": [{"id": "1", "command": ["x"], "timeout": "auto"}],
    }
    data.update(extra)
    return data


def test_defaults_when_the_key_is_absent(write_pipeline: Write) -> None:
    pipeline = load_pipeline(write_pipeline(minimal()))
    assert pipeline.steps[0].timeout == "auto"
    assert pipeline.auto_timeout.factor == defaults.AUTO_TIMEOUT_FACTOR == 3.0
    assert pipeline.auto_timeout.floor == defaults.AUTO_TIMEOUT_FLOOR_S == 10.0


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
def test_factor_and_floor_in_every_format(write_pipeline: Write, suffix: str) -> None:
    data = minimal(auto_timeout={"factor": 2.5, "floor": "1m"})
    pipeline = load_pipeline(write_pipeline(data, name="p" + suffix))
    assert pipeline.auto_timeout.factor == 2.5
    assert pipeline.auto_timeout.floor == 60.0
    assert isinstance(pipeline.auto_timeout.factor, float)
    assert isinstance(pipeline.auto_timeout.floor, float)


def test_either_key_alone(write_pipeline: Write) -> None:
    only_factor = load_pipeline(write_pipeline(minimal(auto_timeout={"factor": 1})))
    assert (only_factor.auto_timeout.factor, only_factor.auto_timeout.floor) == (1.0, 10.0)
    only_floor = load_pipeline(write_pipeline(minimal(auto_timeout={"floor": "PT30S"})))
    assert (only_floor.auto_timeout.factor, only_floor.auto_timeout.floor) == (3.0, 30.0)


def test_the_rule_bound_times_factor_at_least_floor(write_pipeline: Write) -> None:
    auto = load_pipeline(write_pipeline(minimal(auto_timeout={"factor": 2, "floor": "5s"})))
    assert auto.auto_timeout.seconds(100.0) == 200.0
    assert auto.auto_timeout.seconds(1.0) == 5.0


@pytest.mark.parametrize(
    ("value", "loc", "fragment"),
    [
        ({"factor": 0.5}, "auto_timeout.factor", "greater than or equal to 1, got 0.5"),
        ({"factor": 0}, "auto_timeout.factor", "got 0"),
        ({"factor": True}, "auto_timeout.factor", "must be a number, got True"),
        ({"factor": "fast"}, "auto_timeout.factor", "'fast'"),
        ({"factor": float("inf")}, "auto_timeout.factor", "finite"),
        ({"floor": 0}, "auto_timeout.floor", "must be a positive duration, got 0"),
        ({"floor": "-5s"}, "auto_timeout.floor", "not a duration: '-5s'"),
        ({"floor": "soon"}, "auto_timeout.floor", "'soon'"),
        ({"factr": 2}, "auto_timeout.factr", "unknown key 'factr' (did you mean 'factor'?)"),
        ("3x", "auto_timeout", "'3x'"),
    ],
)
def test_bad_values_name_the_field_and_value(
    write_pipeline: Write, value: Any, loc: str, fragment: str
) -> None:
    pipeline, issues = check_pipeline_file(write_pipeline(minimal(auto_timeout=value)))
    assert pipeline is None
    found = [(i.loc, i.msg) for i in issues]
    assert len(found) == 1, found
    assert found[0][0] == loc and fragment in found[0][1], found


def test_config_defaults_come_from_defaults_py(write_pipeline: Write) -> None:
    pipeline = load_pipeline(write_pipeline(minimal()))
    assert pipeline.schedule.quantile == defaults.QUANTILE == 0.95
    assert pipeline.schedule.min_margin == defaults.MIN_MARGIN == 0.1
    assert pipeline.alerts.warning == defaults.ALERT_WARNING == 0.8
    assert pipeline.alerts.critical == defaults.ALERT_CRITICAL == 1.0
    assert pipeline.lease_ttl == defaults.LEASE_TTL_S == 60.0
    assert pipeline.state_dir.name == defaults.STATE_DIR == ".planner"
    assert defaults.ALERT_STUCK == 2.0 and defaults.DEFAULT_TASK_S == 60.0


def test_defaults_module_is_plain_constants() -> None:
    source = Path(defaults.__file__).read_text(encoding="utf-8")
    assert "import " not in source  # nothing to pay for, nothing to cycle through
    for name in defaults.__all__:
        assert isinstance(getattr(defaults, name), float | str), name
        assert f"{name} = " in source
