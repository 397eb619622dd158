"""Learning benchmarks: predictor latency and training time, each against a baseline.

    python benchmarks/bench_learning.py latency              # 10,000 tasks, after loading
    python benchmarks/bench_learning.py training --rows N    # train_pipeline on N rows (1e6)
    python benchmarks/bench_learning.py all

``latency``: a synthetic pipeline of 20 steps x 500 accounts (per-step params, quantities
and account weights, slow drift) is trained with the default settings; then the next run's
10,000 tasks are predicted by the loaded model, and, as the baseline in the same run, by
the baselines-only predictor (no model) on the same history and tasks: 15 interleaved
rounds, median and minimum (the machine is shared: the minimum is the least disturbed).

``training``: ``train_pipeline`` (holdout evaluation + fit on everything + save) on N
synthetic attempt rows, against the baselines-only training of the same rows (features,
grouped baselines and conformal bounds, no gradient boosting) in the same run.

Run with ``OMP_NUM_THREADS=1`` on a shared machine; the fits use one thread anyway.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from model_path import serving_the_model  # the benchmarks' folder

from planner.history import HistoryStore
from planner.learning.predictor import Predictor
from planner.learning.registry import Registry
from planner.learning.training import train_pipeline
from planner.planning.model import TaskQuery

STEPS = 20
ACCOUNTS = 500
_T0 = pd.Timestamp("2026-01-01", tz="UTC")


def synthetic(
    runs: int, *, steps: int = STEPS, accounts: int = ACCOUNTS, seed: int = 0
) -> pd.DataFrame:
    """``runs`` runs of ``steps`` x ``accounts`` tasks as an attempts frame (vectorized)."""
    rng = np.random.default_rng(seed)
    n = runs * steps * accounts
    run = np.repeat(np.arange(runs), steps * accounts)
    step = np.tile(np.repeat(np.arange(steps), accounts), runs)
    account = np.tile(np.arange(accounts), runs * steps)
    step_base = rng.lognormal(4.0, 1.0, steps)
    acct_w = rng.lognormal(0.0, 0.5, accounts)
    quantity = rng.choice([100.0, 200.0, 400.0, 800.0], n)
    drift = np.exp(0.5 * run / max(runs - 1, 1))
    duration = (
        step_base[step]
        * acct_w[account]
        * (quantity / 100.0) ** 0.6
        * drift
        * rng.lognormal(0.0, 0.2, n)
    )
    offset = rng.uniform(0.0, 600.0, n)
    started = _T0 + pd.to_timedelta(run * 86_400.0 + offset, unit="s")
    step_names = np.array([f"step{i:02d}" for i in range(steps)], dtype=object)
    acct_names = np.array([f"acct{i:04d}" for i in range(accounts)], dtype=object)
    params = [{"region": "eu", "mode": i % 3} for i in range(steps)]
    frame = pd.DataFrame(
        {
            "attempt_id": np.arange(1, n + 1, dtype="int64"),
            "run_id": pd.array(np.char.add("r", run.astype(str)), dtype="string"),
            "pipeline": pd.array(np.full(n, "bench", dtype=object), dtype="string"),
            "step": pd.array(step_names[step], dtype="string"),
            "account": pd.array(acct_names[account], dtype="string"),
            "attempt": np.ones(n, dtype="int64"),
            "quantity": quantity,
            "params": [params[s] for s in step.tolist()],
            "n_accounts": pd.array(np.full(n, accounts), dtype="Int64"),
            "concurrency": pd.array(np.full(n, 8), dtype="Int64"),
            "started_at": pd.Series(started).astype("datetime64[us, UTC]"),
            "duration_s": duration,
            "status": pd.array(np.full(n, "succeeded", dtype=object), dtype="string"),
            "peak_rss_mb": 100.0 * acct_w[account],
        }
    )
    frame["finished_at"] = frame["started_at"] + pd.to_timedelta(frame["duration_s"], unit="s")
    return frame.sort_values("started_at", kind="stable").reset_index(drop=True)


def _tasks(frame: pd.DataFrame) -> list[TaskQuery]:
    first = frame.drop_duplicates(["step", "account"])
    params = {s: p for s, p in zip(first["step"], first["params"], strict=True)}
    return [
        TaskQuery(str(s), str(a), 200.0, params[s], ACCOUNTS, 8)
        for s, a in zip(first["step"], first["account"], strict=True)
    ]


def _timings_ms(
    predictors: list[Predictor], tasks: list[TaskQuery], now: object, repeat: int = 15
) -> list[list[float]]:
    """Interleaved timings (ms) of each predictor on the same tasks, after a warm-up."""
    out: list[list[float]] = [[] for _ in predictors]
    for p in predictors:
        p.predict(tasks, now)  # type: ignore[arg-type]
    for _ in range(repeat):
        for i, p in enumerate(predictors):
            t = time.perf_counter()
            p.predict(tasks, now)  # type: ignore[arg-type]
            out[i].append((time.perf_counter() - t) * 1000.0)
    return out


def bench_latency() -> None:
    frame = synthetic(runs=8)
    tasks = _tasks(frame)
    now = frame["finished_at"].max().floor("s").to_pydatetime() + timedelta(hours=1)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = HistoryStore(f"sqlite:///{tmp}/history.db")  # records the trained digests
        registry = Registry(Path(tmp) / "models", ledger=ledger)
        t = time.perf_counter()
        with serving_the_model():  # time the model's path, whatever the gate decides
            result = train_pipeline(frame, pipeline="bench", registry=registry)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        model = Predictor.load(registry.root, "bench", frame, ledger=ledger)
        load_s = time.perf_counter() - t
        baseline = Predictor.load(Path(tmp) / "no-models", "bench", frame, ledger=ledger)
        model_t, base_t = _timings_ms([model, baseline], tasks, now)
    print(f"history: {len(frame):,} attempts ({STEPS} steps x {ACCOUNTS} accounts x 8 runs)")
    print(f"training: {fit_s:.1f} s, variant {result.variant}; predictor load {load_s:.2f} s")
    print(f"{'predictor':<28} {'tasks':>6} {'median ms':>10} {'min ms':>7}")
    for name, times in (("model", model_t), ("baselines only", base_t)):
        med, low = statistics.median(times), min(times)
        print(f"{name:<28} {len(tasks):>6} {med:>10.1f} {low:>7.1f}")
    ratio = statistics.median(model_t) / statistics.median(base_t)
    print(f"model / baselines (medians): {ratio:.2f}x; target < 100 ms")


def bench_training(rows: int) -> None:
    runs = max(rows // (STEPS * ACCOUNTS), 2)
    t = time.perf_counter()
    frame = synthetic(runs=runs)
    gen_s = time.perf_counter() - t
    print(f"history: {len(frame):,} synthetic attempts (generated in {gen_s:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        ledger = HistoryStore(f"sqlite:///{tmp}/history.db")
        registry = Registry(Path(tmp) / "models", ledger=ledger)
        t = time.perf_counter()
        base = train_pipeline(frame, pipeline="base", registry=registry, min_model_rows=10**12)
        base_s = time.perf_counter() - t
        t = time.perf_counter()
        full = train_pipeline(frame, pipeline="full", registry=registry)
        full_s = time.perf_counter() - t
    print(f"{'training':<34} {'seconds':>8} {'MdAPE':>7} {'MAE s':>8}")
    for name, res, sec in (
        ("baselines only (features+bounds)", base, base_s),
        (f"model ({full.variant})", full, full_s),
    ):
        m = res.methods["model"]
        print(f"{name:<34} {sec:>8.1f} {m['mdape'] or 0:>7.1%} {m['mae_s'] or 0:>8.1f}")
    print(f"model / baselines-only training time: {full_s / base_s:.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("latency", "training", "all"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.what in ("latency", "all"):
        bench_latency()
    if args.what in ("training", "all"):
        bench_training(args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
