"""Recommendations in plain words, each with the numbers behind it.

Every rule reads the plan's figures and, when it applies, says what to change and by how
much: a run that overruns its cadence (which concurrency fits, within what memory, or which
cadence would; "fits" is the CPU fit at the run's measured CPU per task and the memory
fit, as ``auto`` uses them), a concurrency that does not fit the machine or gains nothing,
a cadence mostly idle, how far each step gains from running more tasks at once (where the
history shows its contention), a single task that sets a step's makespan, tasks estimated
without history, and a run bound that is not calibrated yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from planner.planning.concurrency import ConcurrencyChoice
from planner.planning.contention import StepContention
from planner.planning.estimate import MIN_CALIBRATION_RUNS
from planner.planning.model import (
    DEFAULT_SOURCE,
    IntervalDecision,
    Recommendation,
    RunEstimate,
    StepPlan,
    TaskPlan,
    WhatIf,
)
from planner.units import format_duration

__all__ = ["nice_duration", "recommend"]


def nice_duration(seconds: float) -> tuple[float, str]:
    """``seconds`` rounded up to whole minutes (under an hour) or hours: ``(seconds, "30h")``."""
    unit, name = (60.0, "m") if seconds < 3600 else (3600.0, "h")
    count = max(1, math.ceil(seconds / unit - 1e-9))
    return count * unit, f"{count}{name}"


def _gib(mb: float | None) -> str:
    return "?" if mb is None else f"{mb / 1024:.1f}"


def recommend(
    *,
    run: RunEstimate,
    interval: IntervalDecision,
    min_margin: float,
    choice: ConcurrencyChoice,
    what_if: Sequence[WhatIf],
    steps: Sequence[StepPlan],
    tasks: Sequence[TaskPlan],
    free_memory_mb: float | None,
    contention: Mapping[str, StepContention] | None = None,
) -> list[Recommendation]:
    """The recommendations for a plan, most important first."""
    out: list[Recommendation] = []
    cadence = interval.cadence_s
    if cadence is not None and run.bound_s > cadence:
        out.append(
            _overrun(
                run,
                cadence=cadence,
                min_margin=min_margin,
                choice=choice,
                what_if=what_if,
                free_memory_mb=free_memory_mb,
            )
        )
    elif cadence is not None and run.bound_s * (1 + min_margin) < 0.5 * cadence:
        need, need_text = nice_duration(run.bound_s * (1 + min_margin))
        out.append(
            Recommendation(
                f"the run is predicted {format_duration(run.predicted_s)} (bound "
                f"{format_duration(run.bound_s)}) of a {format_duration(cadence)} cadence: "
                f"runs could start every {need_text} with the {min_margin:.0%} margin",
                "idle",
                {
                    "predicted_s": run.predicted_s,
                    "bound_s": run.bound_s,
                    "cadence_s": cadence,
                    "suggested_cadence_s": need,
                },
            )
        )
    auto = choice.auto or min(choice.cpu_limit, choice.memory_limit or choice.cpu_limit)
    out.extend(
        Recommendation(
            f"{w}: use {auto} (concurrency.max: auto)",
            "concurrency",
            {
                "concurrency": choice.concurrency,
                "cpu_limit": choice.cpu_limit,
                "memory_limit": choice.memory_limit,
                "cpu_per_task": choice.cpu_per_task,
            },
        )
        for w in choice.warnings
    )
    out.extend(_no_gain(choice, what_if))
    out.extend(_contention(contention or {}))
    out.extend(_dominant_tasks(steps, tasks, run))
    defaults = [t for t in tasks if t.source == DEFAULT_SOURCE]
    if defaults:
        out.append(
            Recommendation(
                f"{len(defaults)} of {len(tasks)} tasks have no history and use the default "
                f"estimate ({format_duration(defaults[0].predicted_s)}): the plan is a guess for "
                "them until they have run once",
                "history",
                {"default_tasks": len(defaults), "tasks": len(tasks)},
            )
        )
    if run.calibration_runs < MIN_CALIBRATION_RUNS:
        out.append(
            Recommendation(
                f"the run bound is not calibrated yet: {run.bound_rule}",
                "calibration",
                {"calibration_runs": run.calibration_runs, "factor": round(run.factor, 4)},
            )
        )
    return out


def _overrun(
    run: RunEstimate,
    *,
    cadence: float,
    min_margin: float,
    choice: ConcurrencyChoice,
    what_if: Sequence[WhatIf],
    free_memory_mb: float | None,
) -> Recommendation:
    path = run.critical_path
    subject = f"step {path[0]}" if len(path) == 1 else "the run"
    head = (
        f"{subject} is predicted {format_duration(run.predicted_s)} (bound "
        f"{format_duration(run.bound_s)}) against a {format_duration(cadence)} cadence"
    )
    new_cadence, cadence_text = nice_duration(run.bound_s * (1 + min_margin))
    numbers: dict[str, float | int | str | None] = {
        "predicted_s": run.predicted_s,
        "bound_s": run.bound_s,
        "cadence_s": cadence,
        "suggested_cadence_s": new_cadence,
    }
    fitting = [w for w in what_if if w.makespan_s * run.factor <= cadence]
    allowed = [w for w in fitting if w.fits_cpu and w.fits_memory]
    if allowed and allowed[0].concurrency != choice.concurrency:
        best = allowed[0]
        memory = (
            f"within memory ({_gib(best.memory_mb)} of {_gib(free_memory_mb)} GiB)"
            if best.memory_mb is not None and free_memory_mb
            else "(memory per task not known)"
        )
        numbers |= {
            "concurrency": best.concurrency,
            "makespan_s": best.makespan_s,
            "memory_mb": best.memory_mb,
        }
        text = (
            f"{head}: concurrency {best.concurrency} brings it to "
            f"{format_duration(best.makespan_s)} {memory}, or set the cadence to {cadence_text}"
        )
        return Recommendation(text, "cadence", numbers)
    if fitting:
        best = fitting[0]
        why = "the CPU" if not best.fits_cpu else "memory"
        numbers |= {"concurrency": best.concurrency, "makespan_s": best.makespan_s}
        text = (
            f"{head}: it cannot fit its cadence at any allowed concurrency (concurrency "
            f"{best.concurrency} would bring it to {format_duration(best.makespan_s)} but "
            f"exceeds {why}): set the cadence to {cadence_text}"
        )
        return Recommendation(text, "cadence", numbers)
    text = (
        f"{head}: it cannot fit its cadence at any allowed concurrency: set the cadence to "
        f"{cadence_text}"
    )
    return Recommendation(text, "cadence", numbers)


def _no_gain(choice: ConcurrencyChoice, what_if: Sequence[WhatIf]) -> list[Recommendation]:
    chosen = next((w for w in what_if if w.concurrency == choice.concurrency), None)
    if chosen is None:
        return []
    same = [
        w
        for w in what_if
        if w.concurrency < chosen.concurrency and w.makespan_s <= chosen.makespan_s * 1.01
    ]
    if not same:
        return []
    least = same[0]
    return [
        Recommendation(
            f"concurrency {chosen.concurrency} gains nothing over {least.concurrency} "
            f"({format_duration(chosen.makespan_s)} against "
            f"{format_duration(least.makespan_s)}): {least.concurrency} runs as fast with "
            "fewer tasks at once",
            "concurrency",
            {
                "concurrency": chosen.concurrency,
                "suggested_concurrency": least.concurrency,
                "makespan_s": chosen.makespan_s,
            },
        )
    ]


def _contention(contention: Mapping[str, StepContention]) -> list[Recommendation]:
    """Per step with a contention curve: up to which count it gains (its knee)."""
    out = []
    for step, found in contention.items():
        usl = found.usl
        if usl is None:
            continue
        peak = usl.peak
        out.append(
            Recommendation(
                found.describe(),
                "contention",
                {
                    "step": step,
                    "knee": usl.knee(),
                    "peak": None if peak is None else round(peak, 1),
                    "sigma": float(f"{usl.sigma:.3g}"),
                    "kappa": float(f"{usl.kappa:.3g}"),
                    "levels": len(found.levels),
                    "attempts": sum(found.attempts),
                    "r2": None if found.r2 is None else round(found.r2, 2),
                },
            )
        )
    return out


def _dominant_tasks(
    steps: Sequence[StepPlan], tasks: Sequence[TaskPlan], run: RunEstimate
) -> list[Recommendation]:
    out = []
    critical = set(run.critical_path)
    for step in steps:
        if step.step not in critical or step.slots < 2:
            continue
        mine = [t for t in tasks if t.step == step.step]
        if len(mine) < 2:
            continue
        longest = max(mine, key=lambda t: t.predicted_s)
        rest = sum(t.predicted_s for t in mine) - longest.predicted_s
        per_slot = rest / (step.slots - 1)
        if longest.predicted_s > 1.5 * per_slot and longest.predicted_s > 0.5 * run.predicted_s:
            who = f"account {longest.account}" if longest.account else "its task"
            out.append(
                Recommendation(
                    f"in step {step.step}, {who} is predicted "
                    f"{format_duration(longest.predicted_s)}, more than the rest of the step "
                    f"per slot ({format_duration(per_slot)}): more concurrency will not shorten "
                    "the step; split that work",
                    "split",
                    {
                        "step": step.step,
                        "account": longest.account,
                        "predicted_s": longest.predicted_s,
                        "rest_per_slot_s": per_slot,
                    },
                )
            )
    return out
