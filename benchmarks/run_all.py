"""Run every benchmark, one after another, each printing its figures and its ratio to the
baseline measured in the same run.

    python benchmarks/run_all.py            # everything (about 20 minutes on 2 cores)
    python benchmarks/run_all.py --quick    # smaller sizes, for a first look

scikit-learn is limited to one thread (OMP_NUM_THREADS=1) so that figures do not depend on
what else the machine runs. The real traces are read from ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = [
    ["bench_runner.py"],
    ["bench_history.py"],
    ["bench_learning.py", "latency"],
    ["bench_learning.py", "training"],
    ["bench_planning.py", "all"],
    ["bench_scale.py"],
    ["bench_adaptive.py"],
    ["bench_contention.py"],
]
QUICK = [
    ["bench_runner.py", "--tasks", "300"],
    ["bench_history.py", "--attempts", "500", "--bulk", "20000"],
    ["bench_learning.py", "latency"],
    ["bench_learning.py", "training", "--rows", "100000"],
    ["bench_planning.py", "lpt"],
    ["bench_planning.py", "latency"],
    ["bench_scale.py", "--quick"],
    ["bench_adaptive.py", "--only", "waiting"],
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    failed = 0
    for bench in QUICK if args.quick else FULL:
        print(f"\n=== {' '.join(bench)}", flush=True)
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(HERE / bench[0]), *bench[1:]], check=False, env=env
        )
        print(f"=== {bench[0]}: exit {done.returncode} in {time.monotonic() - t0:.0f}s", flush=True)
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
