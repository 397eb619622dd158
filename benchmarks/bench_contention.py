"""Contention-aware plan: does the what-if predict runs at other concurrencies?

    python benchmarks/bench_contention.py [--accounts 8] [--cpu 0.3] [--levels 1,2,3,4,6,8]

Real runs of one CPU-bound step (each task computes ``--cpu`` CPU seconds) on this
machine: a history of two runs at each level (shuffled), then the plan (fitted sigma,
kappa, knee, the what-if at each level with and without the contention curve), then one
fresh run at each level; prints each prediction's error against the run it predicted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from planner.cli import main
from planner.config import load_pipeline
from planner.history import HistoryStore
from planner.service import Instance
from planner.service.planning import PlanRequest, make_plan

JOB = """\
import sys, time
end = time.process_time() + float(sys.argv[1])
while time.process_time() < end:
    pass
"""


def _pipeline(folder: Path, accounts: int, cpu: float) -> Path:
    (folder / "job.py").write_text(JOB, encoding="utf-8")
    raw = {
        "name": "crunch",
        "accounts": [f"a{i}" for i in range(accounts)],
        "state_dir": str(folder / "state"),
        "concurrency": {"max": "auto"},
        "steps": [
            {
                "id": "crunch",
                "command": [sys.executable, str(folder / "job.py"), str(cpu)],
                "per_account": True,
            }
        ],
    }
    path = folder / "crunch.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _run(path: Path, level: int) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["run", str(path), "--concurrency", str(level), "--quiet"])
    if code != 0:
        raise SystemExit(f"run at {level} failed ({code})")


def _took(url: str) -> dict[str, tuple[int, float]]:
    with HistoryStore(url) as store:
        return {
            r.run_id: (r.concurrency, (r.finished_at - r.started_at).total_seconds())
            for r in store.list_runs("crunch")
            if r.finished_at is not None and r.concurrency is not None
        }


def main_bench(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--cpu", type=float, default=0.3)
    parser.add_argument("--levels", default="1,2,3,4,6,8")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench-contention-"))
    path = _pipeline(folder, args.accounts, args.cpu)
    url = f"sqlite:///{folder / 'state' / 'history.db'}"
    order = levels * 2
    random.Random(args.seed).shuffle(order)
    print(f"{os.cpu_count()} cores; history: runs at {order}")
    for level in order:
        _run(path, level)
    history = set(_took(url))

    pipeline = load_pipeline(path)
    with Instance.for_pipeline(pipeline, db=url) as instance:
        frame = instance.store.attempts_frame(pipeline="crunch")
        plans = {
            n: make_plan(instance, pipeline, PlanRequest(concurrency=n), frame=frame)
            for n in levels
        }
        auto = make_plan(instance, pipeline, frame=frame)
    sources = sorted({t.source for t in auto.tasks})
    print(f"estimates from: {', '.join(sources)}")
    found = auto.contention["crunch"]
    usl = found.usl
    print(f"auto: {auto.concurrency_rule}")
    print(found.describe())
    if usl is not None:
        print(
            f"sigma {usl.sigma:.3f} kappa {usl.kappa:.4f} knee {usl.knee()} peak "
            f"{usl.peak if usl.peak is None else round(usl.peak, 1)} reference {found.reference}"
        )
        print(
            "observed stretch:",
            dict(zip(found.levels, map(lambda x: round(x, 2), found.observed), strict=True)),
        )

    for level in levels:  # the runs the plans predicted
        _run(path, level)
    fresh = {n: took for rid, (n, took) in _took(url).items() if rid not in history}
    print(f"{'n':>3} {'measured':>9} {'with':>8} {'err%':>6} {'without':>8} {'err%':>6}")
    errors: dict[str, list[float]] = {"with": [], "without": []}
    for n in levels:
        row = next(w for w in plans[n].what_if if w.concurrency == n)
        with_c = row.makespan_s
        without = row.flat_makespan_s if row.flat_makespan_s is not None else row.makespan_s
        measured = fresh[n]
        e_with = 100 * (with_c - measured) / measured
        e_without = 100 * (without - measured) / measured
        errors["with"].append(abs(e_with))
        errors["without"].append(abs(e_without))
        print(
            f"{n:>3} {measured:>8.2f}s {with_c:>7.2f}s {e_with:>+6.0f} {without:>7.2f}s "
            f"{e_without:>+6.0f}"
        )
    mean_with = sum(errors["with"]) / len(levels)
    mean_without = sum(errors["without"]) / len(levels)
    print(f"mean |error|: with contention {mean_with:.0f}%, without {mean_without:.0f}%")
    return {"with": mean_with, "without": mean_without}


if __name__ == "__main__":
    main_bench()
