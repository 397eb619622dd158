"""Retries by error class: classify a failure, then decide whether and when to retry.

A failure gets the class of the first rule of the step's policy that matches (an exit code
listed, or a regex found in the stderr tail); a timeout is class ``timeout``, a task stopped
over its step's ``memory_limit`` class ``memory``; anything else is ``default``. The
class's action gives the number of retries and the backoff: exponential
(``base * 2**(n-1)``), linear (``base * n``) or fixed (``base``), capped at ``cap``, and
with full jitter a uniform draw in ``[0, delay]``. Randomness comes in as an argument, so
tests pass a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from planner.config.models import RetryAction, RetryPolicy

__all__ = [
    "DEFAULT_CLASS",
    "MEMORY_CLASS",
    "TIMEOUT_CLASS",
    "RetryDecision",
    "backoff_delay",
    "classify_failure",
    "decide_retry",
]

TIMEOUT_CLASS = "timeout"
MEMORY_CLASS = "memory"
DEFAULT_CLASS = "default"


@dataclass(frozen=True)
class RetryDecision:
    """Whether a failed attempt is tried again, and after how many seconds."""

    error_class: str
    retry: bool
    delay_s: float = 0.0


def classify_failure(
    policy: RetryPolicy | None,
    *,
    exit_code: int | None,
    stderr_tail: str,
    timed_out: bool,
    over_memory: bool = False,
) -> str:
    """The error class of a failed attempt under ``policy`` (``over_memory``: it was
    stopped for exceeding its memory limit)."""
    if over_memory:
        return MEMORY_CLASS
    if timed_out:
        return TIMEOUT_CLASS
    if policy is None:
        return DEFAULT_CLASS
    for name, rule in policy.classify.items():
        if exit_code is not None and exit_code in rule.exit_codes:
            return name
        if any(re.search(pattern, stderr_tail) for pattern in rule.stderr):
            return name
    return DEFAULT_CLASS


def backoff_delay(action: RetryAction, retry_number: int, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retry_number`` (1 for the first retry)."""
    n = max(1, retry_number)
    if action.backoff == "exponential":
        delay = action.base * (2.0 ** min(n - 1, 60))
    elif action.backoff == "linear":
        delay = action.base * n
    else:
        delay = action.base
    delay = min(delay, action.cap)
    if action.jitter:
        delay = rng.uniform(0.0, delay)
    return delay


def decide_retry(
    policy: RetryPolicy | None,
    *,
    attempt: int,
    exit_code: int | None,
    stderr_tail: str,
    timed_out: bool,
    rng: random.Random,
    over_memory: bool = False,
) -> RetryDecision:
    """Classify the failure of attempt number ``attempt`` (1-based) and decide its retry."""
    error_class = classify_failure(
        policy,
        exit_code=exit_code,
        stderr_tail=stderr_tail,
        timed_out=timed_out,
        over_memory=over_memory,
    )
    if policy is None:
        return RetryDecision(error_class, retry=False)
    action = policy.action_for(error_class)
    if attempt > action.max_retries:
        return RetryDecision(error_class, retry=False)
    return RetryDecision(error_class, retry=True, delay_s=backoff_delay(action, attempt, rng))
