"""Adaptive concurrency benchmark: ``concurrency: {max: adaptive}`` against fixed limits.

    python benchmarks/bench_adaptive.py [--only waiting,cpu,memory] [--json]

Every run is a real ``planner run`` process on a fresh SQLite history (no predictions:
the adaptive limit starts at ``auto``, cores - 1), and the wall time is the run's own
(``planner show --json``). In one invocation:

1. waiting-bound: a local HTTP service on 127.0.0.1 serves at most ``k`` requests at once
   (the others queue), 72 tasks make 4 requests of 0.25 s each; fixed 1, cores - 1, k, 2k
   against adaptive (which is not told k). Targets: adaptive within 1.3x of the best
   fixed, and at least 2x faster than cores - 1;
2. CPU-bound: 24 tasks of about 1.4 s of pure CPU; fixed 1, cores, 2 x cores, 4 x cores
   against adaptive (target within 1.25x of the best fixed), and its limit over time;
3. memory: 30 tasks that each hold 400 MB for 1.5 s, a pressure threshold set a little
   above the memory in use now: the limit stops growing, no task is killed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
CLIENT = (
    "import sys, urllib.request\n"
    "for _ in range(int(sys.argv[2])):\n"
    "    urllib.request.urlopen(sys.argv[1], timeout=120).read()\n"
)
CPU_TASK = "sum(i * i for i in range(16_000_000))"
MEMORY_TASK = "import time; b = b'x' * (400 * 2**20); time.sleep(1.5)"


class Service:
    """An HTTP service on loopback that works on at most ``k`` requests at once."""

    def __init__(self, k: int, hold_s: float) -> None:
        slots = threading.Semaphore(k)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with slots:
                    time.sleep(hold_s)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pipeline(folder: Path, name: str, command: list[str], tasks: int, extra: str = "") -> Path:
    accounts = "\n".join(f"  - a{i:03d}" for i in range(tasks))
    text = f"""name: {name}
state_dir: {folder / "state"}
concurrency:
  max: adaptive
{extra}
accounts:
{accounts}
steps:
  - id: work
    per_account: true
    command: {json.dumps(command)}
"""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def run(path: Path, db: Path, concurrency: int | None) -> dict[str, Any]:
    """One ``planner run``: the run's ``planner show --json`` document."""
    env = {**os.environ, "PLANNER_DB": f"sqlite:///{db}"}
    args = [sys.executable, "-m", "planner", "run", str(path), "--quiet"]
    if concurrency is not None:
        args += ["--concurrency", str(concurrency)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"planner run failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    runs = subprocess.run(
        [sys.executable, "-m", "planner", "runs", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    run_id = json.loads(runs.stdout)["runs"][0]["run_id"]
    show = subprocess.run(
        [sys.executable, "-m", "planner", "show", run_id, "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(show.stdout))


def limits_text(document: dict[str, Any]) -> str:
    run = document["run"]
    t0 = run["started_at"]
    from datetime import datetime

    start = datetime.fromisoformat(t0)
    parts = []
    for change in run["limit_changes"]:
        at = (datetime.fromisoformat(change["at"]) - start).total_seconds()
        parts.append(f"{change['to']}@{max(0.0, at):.1f}s")
    return " ".join(parts)


def compare(
    title: str,
    path: Path,
    folder: Path,
    fixed: dict[str, int],
) -> dict[str, Any]:
    """Every fixed limit and adaptive, each on a fresh history; the figures."""
    rows: dict[str, Any] = {}
    for label, n in [*fixed.items(), ("adaptive", None)]:
        db = folder / f"{title}-{label}.db"
        document = run(path, db, n)
        rows[label] = {
            "concurrency": n,
            "wall_s": round(document["run"]["duration_s"], 2),
            "limits": limits_text(document),
            "killed": sum(1 for a in document["attempts"] if (a["exit_code"] or 0) in (-9, 137)),
            "statuses": sorted({a["status"] for a in document["attempts"]}),
        }
        print(
            f"  {title:8} {label:14} {rows[label]['wall_s']:7.2f}s  limits {rows[label]['limits']}"
        )
    return rows


def waiting(folder: Path, k: int, spare: int) -> dict[str, Any]:
    service = Service(k, 0.25)
    try:
        client = folder / "client.py"
        client.write_text(CLIENT)
        command = [sys.executable, str(client), service.url, "4"]
        path = pipeline(folder, "waiting", command, 72)
        print(f"waiting-bound: 72 tasks x 4 requests of 0.25 s, the service serves {k} at once")
        fixed = {"1": 1, f"cores-1={spare}": spare, f"k={k}": k, f"2k={2 * k}": 2 * k}
        rows = compare("waiting", path, folder, fixed)
    finally:
        service.close()
    best = min(r["wall_s"] for label, r in rows.items() if label != "adaptive")
    adaptive = rows["adaptive"]["wall_s"]
    auto = rows[f"cores-1={spare}"]["wall_s"]
    print(
        f"  adaptive / best fixed = {adaptive / best:.2f}x (target <= 1.3); "
        f"cores-1 / adaptive = {auto / adaptive:.1f}x (target >= 2)"
    )
    return {
        "rows": rows,
        "adaptive_vs_best": round(adaptive / best, 3),
        "auto_vs_adaptive": round(auto / adaptive, 2),
    }


def cpu(folder: Path, cores: int) -> dict[str, Any]:
    path = pipeline(folder, "cpu", [sys.executable, "-c", CPU_TASK], 24)
    print(f"CPU-bound: 24 tasks of pure CPU on {cores} cores")
    fixed = {"1": 1, f"cores={cores}": cores, f"2xcores={2 * cores}": 2 * cores,
             f"4xcores={4 * cores}": 4 * cores}  # fmt: skip
    rows = compare("cpu", path, folder, fixed)
    best = min(r["wall_s"] for label, r in rows.items() if label != "adaptive")
    ratio = rows["adaptive"]["wall_s"] / best
    print(f"  adaptive / best fixed = {ratio:.2f}x (target <= 1.25)")
    return {"rows": rows, "adaptive_vs_best": round(ratio, 3)}


def memory(folder: Path) -> dict[str, Any]:
    used = psutil.virtual_memory().percent / 100
    total_mb = psutil.virtual_memory().total / 2**20
    threshold = min(0.95, used + 2400 / total_mb)  # room for about 6 tasks
    extra = f"memory_pressure:\n  threshold: {threshold:.3f}"
    path = pipeline(folder, "memory", [sys.executable, "-c", MEMORY_TASK], 30, extra)
    print(
        f"memory: 30 tasks of 400 MB, {used:.0%} in use now, threshold {threshold:.1%} "
        f"(about {(threshold - used) * total_mb / 400:.0f} tasks fit)"
    )
    rows = compare("memory", path, folder, {})
    print(f"  killed by the kernel: {rows['adaptive']['killed']}")
    return {"rows": rows, "threshold": round(threshold, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="waiting,cpu,memory")
    parser.add_argument("--k", type=int, default=8, help="the service's capacity (waiting)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cores = psutil.cpu_count() or 1
    wanted = set(args.only.split(","))
    figures: dict[str, Any] = {"cores": cores}
    with tempfile.TemporaryDirectory(prefix="bench-adaptive-") as tmp:
        folder = Path(tmp)
        if "waiting" in wanted:
            figures["waiting"] = waiting(folder, args.k, max(1, cores - 1))
        if "cpu" in wanted:
            figures["cpu"] = cpu(folder, cores)
        if "memory" in wanted:
            figures["memory"] = memory(folder)
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
