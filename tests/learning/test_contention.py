"""Fitting the USL per step from an attempts frame: recovered on synthetic histories,
robust to accounts of different sizes and to odd attempts, and absent with too little
evidence."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from planner.learning.contention import MIN_ATTEMPTS, fit_contention, fit_usl, level_effects
from planner.planning.contention import USL

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def history(
    levels: Sequence[int],
    usl: USL,
    *,
    accounts: int = 10,
    noise: float = 0.05,
    seed: int = 0,
    step: str = "collect",
    quantity: float = 1.0,
    status: str = "succeeded",
) -> pd.DataFrame:
    """One run per level in ``levels``; account ``i`` takes ``(5 + i) x s(level)`` seconds
    with log-normal ``noise``."""
    rng = np.random.default_rng(seed)
    rows = []
    t = T0
    for run, level in enumerate(levels):
        for a in range(accounts):
            d = (5.0 + a) * quantity * usl.stretch(level) * float(np.exp(rng.normal(0, noise)))
            rows.append(
                {
                    "attempt_id": len(rows),
                    "run_id": f"r{run}",
                    "pipeline": "p",
                    "step": step,
                    "account": f"a{a}",
                    "attempt": 1,
                    "quantity": quantity,
                    "params": {},
                    "n_accounts": accounts,
                    "concurrency": level,
                    "started_at": t,
                    "finished_at": t + timedelta(seconds=d),
                    "duration_s": d,
                    "status": status,
                }
            )
            t += timedelta(seconds=60)
    frame = pd.DataFrame(rows)
    frame["concurrency"] = frame["concurrency"].astype("Int64")
    frame["n_accounts"] = frame["n_accounts"].astype("Int64")
    return frame


def test_fit_usl_recovers_exact_curves() -> None:
    truth = USL(0.08, 0.004)
    levels = [1, 2, 4, 8, 16]
    usl, c, r2 = fit_usl(levels, [3.0 * truth.stretch(n) for n in levels])
    assert usl.sigma == pytest.approx(0.08) and usl.kappa == pytest.approx(0.004)
    assert c == pytest.approx(3.0) and r2 == pytest.approx(1.0)
    # two levels: sigma alone (two points cannot tell contention from coherency)
    usl, c, _ = fit_usl([1, 4], [1.0, 1.6])
    assert usl.sigma == pytest.approx(0.2) and usl.kappa == 0.0 and c == pytest.approx(1.0)
    # speed-up with concurrency (a warm cache) is not contention: no negative terms
    usl, _, _ = fit_usl([1, 2, 4], [2.0, 1.5, 1.0])
    assert usl == USL(0.0, 0.0)
    with pytest.raises(ValueError, match="two distinct levels"):
        fit_usl([4, 4], [1.0, 1.1])


def test_fit_contention_recovers_sigma_and_kappa_from_noisy_history() -> None:
    truth = USL(0.1, 0.01)
    frame = history([1, 2, 4, 8, 16, 1, 2, 4, 8, 16], truth)
    found = fit_contention(frame)["collect"]
    assert found.usl is not None
    assert found.levels == (1, 2, 4, 8, 16) and found.attempts == (20,) * 5
    assert found.usl.sigma == pytest.approx(0.1, abs=0.03)
    assert found.usl.kappa == pytest.approx(0.01, abs=0.002)
    assert found.r2 is not None and found.r2 > 0.99
    peak = found.usl.peak
    assert peak is not None and peak == pytest.approx(truth.peak, rel=0.15)
    assert found.usl.knee() in (6, 7, 8)
    # the last two runs ran at 8 and 16: estimates made from them sit at about 12
    assert found.reference == 12
    # and what each of its last 10 runs ran at, for the last-k means that average them
    assert found.recent == (1, 2, 4, 8, 16, 1, 2, 4, 8, 16)
    # observed stretch per level, relative to the curve at one
    assert found.observed == pytest.approx([truth.stretch(n) for n in found.levels], rel=0.05)


def test_accounts_of_different_sizes_at_different_levels_do_not_fool_it() -> None:
    """Big accounts ran only at high concurrency: a per-level median would mistake their
    size for contention; the group effects take it out."""
    truth = USL(0.2, 0.0)
    frame = history([1, 2, 4, 8] * 2, truth, accounts=12, noise=0.02)
    # drop the big accounts' attempts at the low levels (and the small ones' at high)
    big = frame["account"].isin([f"a{i}" for i in range(6, 12)])
    low = frame["concurrency"] <= 2
    frame = frame.loc[~(big & low) & ~(~big & (frame["concurrency"] == 8))]
    found = fit_contention(frame)["collect"]
    assert found.usl is not None
    assert found.usl.sigma == pytest.approx(0.2, abs=0.03)
    assert found.usl.kappa == pytest.approx(0.0, abs=0.003)


def test_quantities_are_normalised_by_the_growth_of_work() -> None:
    """The same accounts at quantity 1 and 4 in different runs: the growth line takes the
    size out before the levels are compared."""
    truth = USL(0.15, 0.0)
    parts = [
        history([1, 4], truth, quantity=1.0, noise=0.01),
        history([2, 8], truth, quantity=4.0, noise=0.01, seed=1),
    ]
    parts[1]["started_at"] += timedelta(days=1)
    parts[1]["finished_at"] += timedelta(days=1)
    parts[1]["run_id"] = parts[1]["run_id"] + "b"
    frame = pd.concat(parts, ignore_index=True)
    found = fit_contention(frame)["collect"]
    assert found.usl is not None
    assert found.usl.sigma == pytest.approx(0.15, abs=0.04)


def test_odd_attempts_do_not_move_the_curve() -> None:
    truth = USL(0.1, 0.0)
    frame = history([1, 2, 4, 8] * 2, truth, noise=0.02)
    frame.loc[frame.index[::9], "duration_s"] *= 20.0  # a cold cache now and then
    found = fit_contention(frame)["collect"]
    assert found.usl is not None and found.usl.sigma == pytest.approx(0.1, abs=0.03)


def test_a_step_that_does_not_slow_down_is_flat() -> None:
    found = fit_contention(history([1, 2, 4, 8], USL(0.0, 0.0), noise=0.01))["collect"]
    assert found.usl == USL(0.0, 0.0) and found.usl.knee() is None
    assert found.describe().startswith("step collect keeps gaining with more tasks at once")


def test_too_little_evidence_gives_no_curve() -> None:
    truth = USL(0.1, 0.01)
    one = fit_contention(history([4, 4, 4], truth))["collect"]
    assert one.usl is None and one.levels == (4,) and one.attempts == (30,)
    assert "(seen at 1 level: 4 (30 attempts)); using the CPU rule" in one.describe()
    # two levels but too few attempts at one of them
    few = history([1, 8], truth, accounts=MIN_ATTEMPTS - 1)
    found = fit_contention(few)["collect"]
    assert found.usl is None and found.levels == (1, 8)
    assert "fewer than 2 levels with 5 comparable attempts" in found.describe()
    # two levels with enough attempts: sigma alone
    two = fit_contention(history([1, 8], truth))["collect"]
    assert two.usl is not None and two.usl.kappa == 0.0 and two.usl.sigma > 0.1
    # each account at one level only: nothing to compare
    frame = history([1, 8], truth)
    frame.loc[frame["concurrency"] == 8, "account"] = frame["account"] + "-new"
    lone = fit_contention(frame)["collect"]
    assert lone.usl is None and "no account ran at two of them" in lone.describe()


def test_noise_without_a_curve_is_not_fitted() -> None:
    rng = np.random.default_rng(3)
    frame = history([1, 2, 3, 4, 5, 6] * 2, USL(0.0, 0.0), noise=0.0)
    frame["duration_s"] *= np.exp(rng.normal(0, 0.4, len(frame)))
    frame["duration_s"] *= np.where(frame["concurrency"].isin([2, 5]), 1.6, 1.0)
    found = fit_contention(frame)["collect"]
    assert found.usl is None and "without a clear curve" in found.describe()


def test_unusable_attempts_are_left_out() -> None:
    assert fit_contention(pd.DataFrame()) == {}
    frame = history([1, 2, 4], USL(0.1, 0.0))
    assert fit_contention(frame.drop(columns="concurrency")) == {}
    frame["concurrency"] = pd.array([pd.NA] * len(frame), dtype="Int64")  # imported traces
    assert fit_contention(frame) == {}
    failed = history([1, 2, 4], USL(0.1, 0.0), status="failed")
    assert fit_contention(failed) == {}


def test_level_effects_by_median_polish() -> None:
    groups = np.array(["a", "a", "b", "b", "c"], dtype=object)
    levels = np.array([1, 4, 1, 4, 4])
    values = np.log(np.array([10.0, 20.0, 100.0, 200.0, 999.0]))
    at, effect, attempts = level_effects(groups, levels, values)
    assert list(at) == [1, 4] and list(attempts) == [2, 2]  # c ran at one level: left out
    assert np.exp(effect) == pytest.approx([1.0, 2.0])
