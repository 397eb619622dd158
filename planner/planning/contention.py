"""How a step's tasks slow down when more of them run at once: the arithmetic (pure).

A step's contention is Gunther's Universal Scalability Law (USL), written as the stretch
of one task's duration at concurrency ``n`` against the same task run alone:

    s(n) = 1 + sigma (n - 1) + kappa n (n - 1)

``sigma`` (contention: a shared resource queued for) and ``kappa`` (coherency: every task
paying for every other) are >= 0. The step's throughput at ``n``, relative to one task at
a time, is ``X(n) = n / s(n)``; with ``kappa > 0`` it peaks at ``n* = sqrt((1 - sigma) /
kappa)`` and falls past it: more tasks at once then only make each one slower.

The *knee* is where more concurrency stops paying in practice: the smallest ``n`` at which
one more task at once adds less than :data:`MIN_GAIN` of one task's throughput
(``X(n + 1) - X(n) < MIN_GAIN``), never past the peak. For the USL with ``kappa = 0``
(Amdahl) the throughput keeps rising towards ``1 / sigma``; the knee still says where the
gains become small. With ``sigma = kappa = 0`` a step never stops gaining (no knee).

The fit from the history lives in :mod:`planner.learning.contention`; this module only
evaluates it, so planning stays pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KNEE_SEARCH",
    "MIN_GAIN",
    "USL",
    "StepContention",
    "Stretched",
    "contention_json",
    "dominant_knee",
    "evidence_note",
    "reference_stretch",
]

#: The knee: one more task at once adds less than this share of one task's throughput.
MIN_GAIN = 0.1
#: The knee is looked for up to this count (beyond it: "keeps gaining", no knee).
KNEE_SEARCH = 4096


@dataclass(frozen=True)
class USL:
    """The USL's two parameters (both >= 0; see the module docstring)."""

    sigma: float
    kappa: float

    def __post_init__(self) -> None:
        if not (self.sigma >= 0 and self.kappa >= 0):
            raise ValueError(f"sigma and kappa must be >= 0, got {self.sigma}, {self.kappa}")

    def stretch(self, n: float) -> float:
        """``s(n)``: one task's duration at concurrency ``n`` over its duration alone."""
        m = max(1.0, float(n))
        return 1.0 + self.sigma * (m - 1.0) + self.kappa * m * (m - 1.0)

    def ratio(self, n: float, reference: float) -> float:
        """``s(n) / s(reference)``: how a duration predicted at ``reference`` changes at ``n``."""
        return self.stretch(n) / self.stretch(reference)

    def throughput(self, n: float) -> float:
        """``X(n) = n / s(n)``: tasks finished per task-duration, relative to one at a time."""
        m = max(1.0, float(n))
        return m / self.stretch(m)

    @property
    def peak(self) -> float | None:
        """``sqrt((1 - sigma) / kappa)``, where the throughput is highest; ``None`` when it
        never falls (``kappa = 0``). ``sigma >= 1``: 1 (one at a time is best)."""
        if self.kappa <= 0:
            return None
        if self.sigma >= 1:
            return 1.0
        return math.sqrt((1.0 - self.sigma) / self.kappa)

    def best_count(self) -> int | None:
        """The whole count of the highest throughput (the better of the two around the
        peak); ``None`` without a peak."""
        peak = self.peak
        if peak is None:
            return None
        low = max(1, math.floor(peak))
        return low if self.throughput(low) >= self.throughput(low + 1) else low + 1

    def knee(self) -> int | None:
        """The smallest count past which one more task adds less than :data:`MIN_GAIN` of
        one task's throughput (never past :meth:`best_count`); ``None``: it keeps gaining
        up to :data:`KNEE_SEARCH`."""
        top = self.best_count()
        limit = KNEE_SEARCH if top is None else min(top, KNEE_SEARCH)
        n = 1
        while n < limit:
            if self.throughput(n + 1) - self.throughput(n) < MIN_GAIN:
                return n
            n += 1
        return top


@dataclass(frozen=True)
class StepContention:
    """What a step's history says about its contention, and the evidence for it.

    ``levels``: the distinct concurrencies its attempts ran at (ascending), ``attempts``:
    how many usable attempts at each; ``usl``: the fitted curve (``None``: too little
    evidence, see ``reason``); ``r2``: the share of the variance of the per-level
    stretches the curve explains; ``observed``: the measured stretch per level, relative to
    the curve at 1; ``reference``: the concurrency of the step's latest two runs, at which
    the model is asked for its estimates; ``recent``: the concurrency of each of its
    latest runs (up to 10, oldest first), which a last-k mean averages over.
    """

    step: str
    levels: tuple[int, ...]
    attempts: tuple[int, ...]
    usl: USL | None = None
    r2: float | None = None
    observed: tuple[float, ...] = ()
    reference: int | None = None
    reason: str = ""
    recent: tuple[int, ...] = ()

    def ratio(self, n: int, reference: int) -> float:
        """``s(n) / s(reference)`` (1.0 without a curve)."""
        return 1.0 if self.usl is None else self.usl.ratio(n, reference)

    def describe(self) -> str:
        """The curve in words, or why there is none."""
        if self.usl is None:
            return evidence_note(self)
        usl = self.usl
        seen = _levels_text(self.levels, self.attempts)
        fit = f"R² {self.r2:.2f}" if self.r2 is not None else "exact"
        knee = usl.knee()
        peak = usl.peak
        if knee is None:
            gains = f"step {self.step} keeps gaining with more tasks at once"
        elif peak is not None and knee >= math.floor(peak):
            gains = (
                f"step {self.step} gains up to about {knee} at once; past that its tasks "
                "only slow down"
            )
        else:
            gains = (
                f"step {self.step} gains up to about {knee} at once; past that one more task "
                f"adds under {MIN_GAIN:.0%} of a task's throughput"
            )
            if peak is not None:
                gains += f", and past {peak:.1f} its tasks only slow down"
        return f"{gains} (sigma {usl.sigma:.3g}, kappa {usl.kappa:.3g}; {seen}, {fit})"


def _levels_text(levels: Sequence[int], attempts: Sequence[int]) -> str:
    total = sum(attempts)
    return f"{total} attempts at concurrency {', '.join(map(str, levels))}"


def evidence_note(contention: StepContention) -> str:
    """The sentence for a step with too little evidence: what was seen, and the fallback."""
    n = len(contention.levels)
    seen = f"seen at {n} level{'s' if n != 1 else ''}"
    if n:
        pairs = zip(contention.levels, contention.attempts, strict=True)
        seen += ": " + ", ".join(f"{level} ({count} attempts)" for level, count in pairs)
    why = f"; {contention.reason}" if contention.reason else ""
    return (
        f"step {contention.step}: not enough history at different concurrencies to tell how "
        f"it scales ({seen}{why}); using the CPU rule"
    )


def dominant_knee(
    contention: dict[str, StepContention] | None, seconds: dict[str, float]
) -> tuple[str, int] | None:
    """``(step, knee)`` of the step with the most predicted seconds, when it has a curve
    with a knee; else ``None`` (today's rule decides)."""
    if not contention or not seconds:
        return None
    step = max(seconds, key=lambda s: (seconds[s], s))
    found = contention.get(step)
    if found is None or found.usl is None:
        return None
    knee = found.usl.knee()
    return None if knee is None else (step, knee)


def _source_runs(source: str) -> int | None:
    """How many of a step's latest runs an estimate of ``source`` averages: ``k`` for a
    grouped last-k mean by account (one attempt of the group per run), 1 for a mean over
    the whole step (its latest run's tasks); ``None``: not a last-k mean (the model)."""
    head, _, level = source.partition(":")
    if not head.startswith("last") or not head[4:].isdigit():
        return None
    return int(head[4:]) if "account" in level.split(",") else 1


def reference_stretch(
    found: StepContention, source: str, asked_at: int, default_source: str = "default"
) -> float | None:
    """The stretch a task's estimate already holds: for a last-k mean, the mean of
    ``s(n)`` over the runs it averages (:attr:`StepContention.recent`); for the model,
    ``s`` at the concurrency it was asked at; ``None`` for the default estimate (no
    history: nothing to stretch) or a step without a curve."""
    usl = found.usl
    if usl is None or source == default_source:
        return None
    runs = _source_runs(source)
    if runs is None or not found.recent:
        return usl.stretch(asked_at)
    window = found.recent[-runs:]
    return sum(map(usl.stretch, window)) / len(window)


class Stretched:
    """The tasks' durations at any count: each task whose estimate holds the stretch
    ``reference`` (:func:`reference_stretch`) takes ``duration x s(count) / reference``;
    tasks without one (or of a step without a curve) keep their prediction. Callable:
    ``count -> {step: durations}``, remembered per count.
    """

    def __init__(
        self,
        durations: Mapping[str, Sequence[float]],
        references: Mapping[str, Sequence[float | None]],
        curves: Mapping[str, USL],
    ) -> None:
        self.durations = durations
        self.references = references
        self.curves = curves
        self._memo: dict[int, dict[str, Sequence[float]]] = {}

    def __call__(self, count: int) -> Mapping[str, Sequence[float]]:
        found = self._memo.get(count)
        if found is not None:
            return found
        out: dict[str, Sequence[float]] = dict(self.durations)
        for step, usl in self.curves.items():
            refs = self.references.get(step)
            if not refs:
                continue
            at = usl.stretch(count)
            out[step] = [
                d if r is None else d * at / r
                for d, r in zip(self.durations[step], refs, strict=True)
            ]
        self._memo[count] = out
        return out


def _sig(value: float) -> float:
    """Three significant digits: the figure the text prints (``f"{x:.3g}"``)."""
    return float(f"{value:.3g}")


def contention_json(found: StepContention | None) -> dict[str, Any] | None:
    """A step's curve for ``planner plan --json`` (``None``: no curve). ``sigma`` and
    ``kappa`` carry the three significant digits the text prints, ``peak`` one decimal
    (``None``: the throughput never falls), ``knee`` a count (``None``: it keeps gaining),
    ``r2`` two decimals (``None``: the levels did not vary)."""
    if found is None or found.usl is None:
        return None
    usl = found.usl
    peak = usl.peak
    return {
        "sigma": _sig(usl.sigma),
        "kappa": _sig(usl.kappa),
        "peak": None if peak is None else round(peak, 1),
        "knee": usl.knee(),
        "reference": found.reference,
        "levels": list(found.levels),
        "attempts": list(found.attempts),
        "observed": [round(x, 2) for x in found.observed],
        "r2": None if found.r2 is None else round(found.r2, 2),
    }
