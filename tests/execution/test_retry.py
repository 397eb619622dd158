"""Error classes and backoff: classification rules, delays, caps, jitter, retry limits."""

from __future__ import annotations

import random

import pytest

from planner.config import RetryAction, RetryPolicy
from planner.execution import backoff_delay, classify_failure, decide_retry

POLICY = RetryPolicy.model_validate(
    {
        "classify": {
            "network_error": {"exit_codes": [75], "stderr": ["ConnectionError", "ETIMEDOUT"]},
            "system_error": {"exit_codes": [137]},
        },
        "on": {
            "network_error": {"max_retries": 3, "backoff": "exponential", "base": 2, "cap": 5},
            "timeout": {"max_retries": 1, "backoff": "linear", "base": 10, "jitter": False},
            "default": {"max_retries": 0},
        },
    }
)


def test_classification_by_exit_code_stderr_and_timeout() -> None:
    def cls(code: int | None, err: str = "", timed_out: bool = False) -> str:
        return classify_failure(POLICY, exit_code=code, stderr_tail=err, timed_out=timed_out)

    assert cls(75) == "network_error"
    assert cls(1, "x\nrequests.ConnectionError: reset\n") == "network_error"
    assert cls(137) == "system_error"
    assert cls(1, "ValueError") == "default"
    assert cls(75, timed_out=True) == "timeout"
    assert classify_failure(None, exit_code=75, stderr_tail="", timed_out=False) == "default"


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("exponential", [2, 4, 8, 16, 30, 30]),
        ("linear", [2, 4, 6, 8, 10, 12]),
        ("fixed", [2, 2, 2, 2, 2, 2]),
    ],
)
def test_backoff_shapes_and_cap(backoff: str, expected: list[float]) -> None:
    action = RetryAction.model_validate(
        {"backoff": backoff, "base": 2, "cap": 30, "jitter": False, "max_retries": 9}
    )
    rng = random.Random(0)
    assert [backoff_delay(action, n, rng) for n in range(1, 7)] == expected


def test_full_jitter_draws_from_the_injected_source() -> None:
    action = RetryAction.model_validate({"backoff": "exponential", "base": 2, "cap": 5})
    delays = [backoff_delay(action, n, random.Random(42)) for n in (1, 2, 3)]
    expected = [random.Random(42).uniform(0, d) for d in (2, 4, 5)]
    assert delays == expected
    many = [backoff_delay(action, 3, random.Random(s)) for s in range(200)]
    assert all(0 <= d <= 5 for d in many) and max(many) > 4 and min(many) < 1


def test_retry_limits_per_class() -> None:
    rng = random.Random(1)

    def decide(attempt: int, code: int, timed_out: bool = False) -> tuple[str, bool]:
        d = decide_retry(
            POLICY, attempt=attempt, exit_code=code, stderr_tail="", timed_out=timed_out, rng=rng
        )
        return d.error_class, d.retry

    assert [decide(n, 75) for n in (1, 2, 3, 4)] == [("network_error", True)] * 3 + [
        ("network_error", False)
    ]
    assert decide(1, 1) == ("default", False)
    assert decide(1, 137) == ("system_error", False)  # no entry: falls back to default
    timeout = decide_retry(
        POLICY, attempt=1, exit_code=137, stderr_tail="", timed_out=True, rng=rng
    )
    assert (timeout.error_class, timeout.retry, timeout.delay_s) == ("timeout", True, 10)
    assert decide(2, 0, timed_out=True) == ("timeout", False)
