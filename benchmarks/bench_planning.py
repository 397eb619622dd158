"""Planning benchmarks: LPT quality, plan latency, schedule policies on real traces.

    python benchmarks/bench_planning.py lpt        # LPT makespan / lower bound vs round-robin
    python benchmarks/bench_planning.py latency    # build_plan for 20 steps x 500 accounts
    python benchmarks/bench_planning.py simulate   # the four policies on ../shared/data traces
                                                   # and on synthetic series drifting in time
    python benchmarks/bench_planning.py drift      # the synthetic drift series only
    python benchmarks/bench_planning.py all

Each prints its figures and the ratio to the baseline measured in the same run. The traces
are read from ``<repo>/../shared/data`` (never copied into the repo).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from model_path import serving_the_model  # the benchmarks' folder

from planner.planning.makespan import lower_bound, lpt, round_robin
from planner.planning.simulate import PolicyMetrics, Series, series_from_frame, split_time
from planner.service.simulation import REFITS, TRAIN_FRACTION, planner_bounds, run_simulation

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def bench_lpt(seeds: int = 5) -> float:
    """Median LPT/lower-bound over heavy-tailed sets; round-robin on the same sets."""
    print("LPT makespan / lower bound on heavy-tailed tasks (Pareto a=1.5 and lognormal s=1.5)")
    print(f"{'tasks':>6} {'slots':>5} {'LPT med':>8} {'LPT max':>8} {'RR med':>8} {'ms/LPT':>7}")
    all_lpt: list[float] = []
    all_rr: list[float] = []
    for n in (100, 1000, 10000):
        for slots in (2, 8, 32, 64):
            lpt_r, rr_r, spent = [], [], 0.0
            for seed in range(seeds):
                rng = random.Random(seed * 7919 + n + slots)
                for dist in ("pareto", "lognormal"):
                    tasks = [
                        rng.paretovariate(1.5) if dist == "pareto" else rng.lognormvariate(0, 1.5)
                        for _ in range(n)
                    ]
                    lb = lower_bound(tasks, slots)
                    t = time.perf_counter()
                    got = lpt(tasks, slots).makespan
                    spent += time.perf_counter() - t
                    lpt_r.append(got / lb)
                    rr_r.append(round_robin(tasks, slots).makespan / lb)
            all_lpt += lpt_r
            all_rr += rr_r
            print(
                f"{n:>6} {slots:>5} {statistics.median(lpt_r):>8.4f} {max(lpt_r):>8.4f} "
                f"{statistics.median(rr_r):>8.4f} {spent / len(lpt_r) * 1000:>7.2f}"
            )
    med_lpt, med_rr = statistics.median(all_lpt), statistics.median(all_rr)
    print(
        f"all {len(all_lpt)} sets: LPT median {med_lpt:.4f} (target <= 1.05), max "
        f"{max(all_lpt):.4f}; round-robin median {med_rr:.4f}, max {max(all_rr):.4f}; "
        f"round-robin / LPT = {med_rr / med_lpt:.3f}"
    )
    return med_lpt


def bench_latency(repeats: int = 7) -> float:
    """build_plan for 20 steps x 500 accounts (estimates given: the model is loaded)."""
    from planner.config import parse_pipeline, select_steps
    from planner.planning.model import TaskEstimate
    from planner.planning.plan import build_plan, plan_to_json, task_queries

    raw = {
        "name": "bench",
        "accounts": [f"acct-{i:03d}" for i in range(500)],
        "schedule": {"cadence": "24h", "policy": "predicted"},
        "concurrency": {"max": "auto"},
        "steps": [
            {
                "id": str(i),
                "command": ["true"],
                "per_account": True,
                "depends_on": [str(i - 1)] if i % 5 else [],
            }
            for i in range(20)
        ],
    }
    pipeline, issues = parse_pipeline(raw, base_dir=Path("."))
    assert pipeline is not None, issues
    steps = select_steps(pipeline)
    queries = task_queries(pipeline, steps, concurrency=8)
    rng = random.Random(3)
    estimates = []
    for _ in queries:
        d = rng.lognormvariate(4, 1.2)
        estimates.append(TaskEstimate(d, d * 1.4, "model", 400.0))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        plan = build_plan(
            pipeline,
            steps,
            queries,
            estimates,
            past_runs=[],
            now=now,
            cpu_count=16,
            free_memory_mb=22000,
        )
        plan_to_json(plan)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    med = statistics.median(times) * 1000
    print(
        f"plan latency, 20 steps x 500 accounts = {len(queries)} tasks, concurrency "
        f"{plan.concurrency}, {len(plan.what_if)} what-if rows: median {med:.1f} ms wall "
        f"(min {min(times) * 1000:.1f}), median {statistics.median(cpu) * 1000:.1f} ms CPU, "
        f"over {repeats} (target < 200 ms: ratio {med / 200:.2f})"
    )
    _latency_with_predictor(pipeline, steps, queries, now, repeats)
    return med


def _latency_with_predictor(
    pipeline: object, steps: list, queries: list, now: datetime, repeats: int
) -> None:
    """The same plan with the predictor's estimates: a model trained on 3 past runs with
    the default settings (the boosted trees), and the baselines alone, interleaved."""
    import tempfile

    import pandas as pd

    from planner.history import FRAME_DTYPES, HistoryStore
    from planner.learning.predictor import Predictor
    from planner.learning.registry import Registry
    from planner.learning.training import train_pipeline
    from planner.planning.plan import build_plan, plan_to_json

    rng = np.random.default_rng(4)
    rows = []
    for r in range(3):
        at = pd.Timestamp(now) - pd.Timedelta(days=3 - r)
        for i, q in enumerate(queries):
            d = float(rng.lognormal(4, 1.2))
            start = at + pd.Timedelta(seconds=i)
            rows.append(
                {
                    "attempt_id": r * len(queries) + i,
                    "run_id": f"run-{r}",
                    "pipeline": "bench",
                    "step": q.step,
                    "account": q.account,
                    "attempt": 1,
                    "quantity": 0.0,
                    "params": {},
                    "n_accounts": 500,
                    "concurrency": 8,
                    "host": "bench",
                    "started_at": start,
                    "finished_at": start + pd.Timedelta(seconds=d),
                    "duration_s": d,
                    "status": "succeeded",
                    "exit_code": 0,
                    "error_class": None,
                    "peak_rss_mb": 400.0,
                    "cpu_s": d,
                    "load_avg": 1.0,
                    "free_mem_mb": 20000.0,
                    "cpu_count": 16,
                    "source": "planner",
                }
            )
    frame = pd.DataFrame(rows)
    frame = frame.astype({k: v for k, v in FRAME_DTYPES.items() if k != "params"})
    with tempfile.TemporaryDirectory() as tmp:
        ledger = HistoryStore(f"sqlite:///{tmp}/history.db")  # records the trained digests
        registry = Registry(Path(tmp) / "models", ledger=ledger)
        t = time.perf_counter()
        with serving_the_model():  # time the model's path, whatever the gate decides
            train_pipeline(frame, pipeline="bench", registry=registry)  # default settings
        trained_s = time.perf_counter() - t
        loaded, predictors = {}, {}
        for name, root in (("model", registry.root), ("baselines", Path(tmp) / "none")):
            t = time.perf_counter()
            predictors[name] = Predictor.load(root, "bench", frame, ledger=ledger)
            loaded[name] = time.perf_counter() - t
        times: dict[str, list[float]] = {name: [] for name in predictors}
        cpu: dict[str, list[float]] = {name: [] for name in predictors}
        for _ in range(repeats):  # interleaved: both see the same machine load
            for name, predictor in predictors.items():
                t, c = time.perf_counter(), time.process_time()
                estimates = predictor.predict(queries, now)
                plan = build_plan(
                    pipeline,  # type: ignore[arg-type]
                    steps,
                    queries,
                    estimates,
                    past_runs=[],
                    now=now,
                    cpu_count=16,
                    free_memory_mb=22000,
                )
                plan_to_json(plan)
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
    print(f"with the predictor ({len(frame)} past attempts; model trained in {trained_s:.0f} s):")
    for name in predictors:
        med = statistics.median(times[name]) * 1000
        print(
            f"  {name:<9} (loaded in {loaded[name]:.2f} s, excluded): predict + plan median "
            f"{med:.1f} ms wall (min {min(times[name]) * 1000:.1f}), "
            f"{statistics.median(cpu[name]) * 1000:.1f} ms CPU, over {repeats} "
            f"(target < 200 ms: ratio {med / 200:.2f})"
        )


def _julia() -> list[Series]:
    """The Julia CI jobs, parsed by the CSV importer, one series per job (step)."""
    from planner.learning.importers.table import parse_csv

    mapping = {
        "step": "job",
        "run_id": "build",
        "started_at": "created_at",
        "duration_s": "duration_s",
    }
    frame = parse_csv(DATA / "julia-ci-durations.csv.gz", mapping).frame
    return series_from_frame(frame, "step")


def _kth() -> list[Series]:
    """The KTH-SP2 jobs, parsed by the SWF importer, one series per user (account)."""
    from planner.learning.importers.swf import parse_swf

    frame = parse_swf(DATA / "KTH-SP2-1996-2.1-cln.swf.gz").frame
    return series_from_frame(frame, "account")


#: Synthetic drift in time: (title, runs, growth a run, first duration s, cadence s).
DRIFT_CASES = (
    ("synthetic, +1 %/run, 300 runs", 300, 0.01, 3600.0, 0.0),
    ("synthetic, +1 %/run, 300 runs, 6h growing past a 24h cadence", 300, 0.01, 21600.0, 86400.0),
    ("synthetic, +0.3 %/run, 1000 runs (enough history for boosting)", 1000, 0.003, 3600.0, 0.0),
)


def _drift_series(
    seed: int, *, n: int, growth: float, base_s: float, cadence_s: float, sigma: float = 0.1
) -> Series:
    """``n`` runs at the same quantity growing ``growth`` a run, log-normal noise ``sigma``,
    recorded under the lock: each starts a cadence (at least a day) after the previous
    start, or when it ended (the series of tests/planning/test_simulate_drift.py)."""
    rng = np.random.default_rng(seed)
    durations = base_s * (1.0 + growth) ** np.arange(n) * np.exp(rng.normal(0.0, sigma, n))
    gaps = np.maximum(max(cadence_s, 86400.0), durations[:-1])
    return Series("drift", 1.77e9 + np.concatenate(([0.0], np.cumsum(gaps))), durations)


def bench_drift(refits: int = REFITS, seeds: int = 5) -> None:
    """The synthetic drift series, ``seeds`` draws of each simulated alone, then pooled:
    overrun and idle of every policy, and planner's overrun by quarter of the scored part
    (a bound that lags the growth overruns more and more; one that follows it does not)."""
    for title, n, growth, base_s, cadence in DRIFT_CASES:
        t = time.perf_counter()
        pooled: dict[str, list[PolicyMetrics]] = {}
        quarters = np.zeros(4)
        for seed in range(seeds):
            series = [_drift_series(seed, n=n, growth=growth, base_s=base_s, cadence_s=cadence)]
            start = split_time(series, TRAIN_FRACTION)
            bounds = planner_bounds(series, start, refits=refits)
            result = run_simulation(series, cadence, bounds=bounds)
            for name, m in result.policies.items():
                pooled.setdefault(name, []).append(m)
            d, b = series[0].durations, bounds[0]
            scored = ~np.isnan(b)
            over = (d[scored] > b[scored] * (1.0 + 1e-9)).astype(float)
            quarters += [part.mean() for part in np.array_split(over, 4)]
        spent = time.perf_counter() - t
        print(
            f"{title}, sigma 0.1, cadence {cadence:g}: {seeds} draws simulated alone, pooled "
            f"(first {TRAIN_FRACTION:.0%} trains; {spent:.1f} s, {refits} fit(s) each)"
        )
        print(
            f"  {'policy':<15} {'runs':>6} {'collisions':>10} {'deferrals':>9} "
            f"{'overrun':>8} {'idle mean s':>12} {'late mean s':>12}"
        )
        for name, parts in pooled.items():
            runs = sum(m.runs for m in parts)
            m = PolicyMetrics(
                runs=runs,
                collisions=sum(m.collisions for m in parts),
                deferrals=sum(m.deferrals for m in parts),
                idle_s_mean=sum(m.idle_s_mean * m.runs for m in parts) / runs,
                lateness_s_mean=sum(m.lateness_s_mean * m.runs for m in parts) / runs,
            )
            print(_row(name, m))
        shown = ", ".join(f"{q / seeds:.1%}" for q in quarters)
        print(f"  planner overrun by quarter of the scored runs: {shown}")


def _row(name: str, m: PolicyMetrics) -> str:
    return (
        f"  {name:<15} {m.runs:>6} {m.collisions:>10} {m.deferrals:>9} "
        f"{m.overrun_rate:>8.1%} {m.idle_s_mean:>12.0f} {m.lateness_s_mean:>12.0f}"
    )


def bench_simulate(refits: int = REFITS) -> None:
    """All four policies on the Julia CI jobs and the KTH users, on the same scored part.

    Planner's bounds come from its predictor machinery run causally
    (:func:`planner.service.simulation.planner_bounds`): the model is fitted on the first
    30 % of the occurrences, every policy is scored on the rest. The bounds do not depend
    on the cadence: they are computed once per trace (and once more at the quantile that
    matches avg10's overrun rate).
    """
    bench_drift(refits)
    if not DATA.is_dir():
        print(f"simulate: traces not found at {DATA}; skipped")
        return
    cases = [
        ("Julia CI jobs, by step", _julia, (0.0,)),
        ("KTH-SP2 users, by account", _kth, (0.0, "auto")),
    ]
    for title, load, cadences in cases:
        series = load()
        start = split_time(series, TRAIN_FRACTION)
        t = time.perf_counter()
        bounds = planner_bounds(series, start, refits=refits)
        spent_bounds = time.perf_counter() - t
        for cadence in cadences:
            t = time.perf_counter()
            result = run_simulation(series, cadence, bounds=bounds)
            spent = time.perf_counter() - t
            print(
                f"{title}, cadence {cadence}: {result.series} series scored from "
                f"{datetime.fromtimestamp(start, UTC):%Y-%m-%d} (first {TRAIN_FRACTION:.0%} "
                f"trains), planner's bounds in {spent_bounds:.1f} s ({refits} fit(s)), "
                f"policies in {spent:.2f} s"
            )
            print(
                f"  {'policy':<15} {'runs':>6} {'collisions':>10} {'deferrals':>9} "
                f"{'overrun':>8} {'idle mean s':>12} {'late mean s':>12}"
            )
            for name, m in result.policies.items():
                print(_row(name, m))
            p, a = result.policies["planner"], result.policies["avg10_x1.2"]
            o = result.policies["oracle"]
            print(
                f"  planner / avg10_x1.2: overruns x{p.deferrals / max(a.deferrals, 1):.2f}, "
                f"idle x{p.idle_s_mean / max(a.idle_s_mean, 1e-9):.2f}; planner idle - "
                f"oracle idle = {p.idle_s_mean - o.idle_s_mean:.0f} s"
            )
        # planner aiming at avg10's own overrun rate (cadence 0): idle at equal overruns
        last = run_simulation(series, 0.0, bounds=bounds).policies["avg10_x1.2"]
        target = round(1 - last.overrun_rate, 3)
        same = planner_bounds(series, start, quantile=target, refits=refits)
        m = run_simulation(series, 0.0, bounds=same).policies["planner"]
        print(
            f"  planner at quantile {target} (avg10's overrun rate), cadence 0: overrun "
            f"{m.overrun_rate:.1%}, idle {m.idle_s_mean:.0f} s (avg10: "
            f"{last.overrun_rate:.1%}, {last.idle_s_mean:.0f} s)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=("lpt", "latency", "simulate", "drift", "all"))
    parser.add_argument(
        "--refits",
        type=int,
        default=REFITS,
        help=f"simulate: fits of planner's model along the scored part (default {REFITS})",
    )
    args = parser.parse_args(argv)
    if args.which in ("lpt", "all"):
        bench_lpt()
    if args.which in ("latency", "all"):
        bench_latency()
    if args.which in ("simulate", "all"):
        bench_simulate(args.refits)
    if args.which == "drift":
        bench_drift(args.refits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
