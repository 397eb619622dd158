"""Retries by error class: classify a failure, then decide whether and when to retry.

A failure gets the class of the first rule of the step's policy that matches (an exit code
listed, or a regex found in the stderr tail); a timeout is class ``timeout``, a task stopped
over its step's ``memory_limit`` class ``memory``, a task its executor lost (a Dask worker
that died under it) class ``lost``; anything else is ``default``. The
class's action gives the number of retries and the backoff: exponential
(``base * 2**(n-1)``), linear (``base * n``) or fixed (``base``), capped at ``cap``, and
with full jitter a uniform draw in ``[0, delay]``. Randomness comes in as an argument, so
tests pass a seeded ``random.Random``.

Class ``lost`` is the one class retried without being asked: a worker that died is a
fault of the machine, not of the command, so a lost attempt gets its step's ``on.lost``
action when the policy names one, else :data:`LOST_DEFAULT` (one retry after 1 s), even
for a step without a policy (``on.default`` does not apply to it: that is about the
command's own failures). ``{max_retries: 0}`` under ``on.lost`` turns it off.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from planner.config.models import RetryAction, RetryPolicy

__all__ = [
    "DEFAULT_CLASS",
    "LOST_CLASS",
    "LOST_DEFAULT",
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
LOST_CLASS = "lost"
#: What a lost attempt gets when its policy has no ``on.lost``: one retry, after 1 s.
LOST_DEFAULT = RetryAction(max_retries=1, backoff="fixed", base=1.0, cap=1.0, jitter=False)


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
    lost: bool = False,
) -> str:
    """The error class of a failed attempt under ``policy`` (``over_memory``: it was
    stopped for exceeding its memory limit; ``lost``: its executor lost it)."""
    if lost:
        return LOST_CLASS
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
    lost: bool = False,
) -> RetryDecision:
    """Classify the failure of attempt number ``attempt`` (1-based) and decide its retry."""
    error_class = classify_failure(
        policy,
        exit_code=exit_code,
        stderr_tail=stderr_tail,
        timed_out=timed_out,
        over_memory=over_memory,
        lost=lost,
    )
    if error_class == LOST_CLASS:
        action = (policy.on.get(LOST_CLASS) if policy is not None else None) or LOST_DEFAULT
    elif policy is None:
        return RetryDecision(error_class, retry=False)
    else:
        action = policy.action_for(error_class)
    if attempt > action.max_retries:
        return RetryDecision(error_class, retry=False)
    return RetryDecision(error_class, retry=True, delay_s=backoff_delay(action, attempt, rng))
