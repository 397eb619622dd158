"""``planner simulate`` options on a real SQLite history: the scored part, refits, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from planner.cli import main


def test_train_fraction_and_refits(
    history: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = history(10, scale=lambda r: 1.0 + 0.05 * r)
    args = ["simulate", "--pipeline", "nightly", "--db", url, "--cadence", "0", "--json"]
    assert main([*args, "--train-fraction", "0.5", "--refits", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {m["runs"] for m in doc["policies"].values()} == {5}
    assert doc["simulated_from"] == "2026-03-06T02:00:00+00:00"  # the sixth daily run
    # growing runs, back to back: the rule at 1.2 x the mean of the past keeps up, and
    # planner's bound (baselines + conformal on 5 runs) leaves no run overrunning
    assert doc["policies"]["planner"]["deferrals"] == 0
    assert doc["policies"]["oracle"]["idle_s_mean"] == 0.0
    assert main([*args[:-1]]) == 0
    out = capsys.readouterr().out
    assert "runs from 2026-03-04" in out  # ceil(10 x 0.3) = 3: the fourth run
    assert "planner" in out and "avg10_x1.2" in out


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--train-fraction", "1", "must be in [0, 1)"), ("--refits", "0", "must be >= 1")],
)
def test_bad_options_are_bad_input(
    history: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    code = main(["simulate", "--pipeline", "nightly", "--db", history(2), option, value])
    assert code == 2
    assert message in capsys.readouterr().err
