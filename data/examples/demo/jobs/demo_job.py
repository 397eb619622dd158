"""The demo pipeline's jobs: real work on generated data, sized by quantity and account.

    python demo_job.py generate  --account A --quantity Q   # write Q x 1,000 x f(A) CSV rows
    python demo_job.py compress  --account A [--fail-rate P] # gzip them (fails now and then)
    python demo_job.py checksum  --account A --quantity Q   # sha256 over the file, Q/2 passes
    python demo_job.py parse     --account A               # parse, sort by amount, summarise
    python demo_job.py aggregate                           # merge every account's summary
    python demo_job.py report                              # write the report, clean up

Files live in ``$DEMO_WORK_DIR/<run id>`` (default: the system temp folder). An account's
size factor (0.5 to 2) is stable, so durations grow with the quantity and differ per
account. ``compress`` exits 75 with a ``ConnectionError`` on stderr with probability P:
a transient failure that the pipeline's retry policy retries.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

CATEGORIES = ("books", "games", "food", "travel", "tools", "music", "garden", "health")


def work_dir() -> Path:
    base = Path(os.environ.get("DEMO_WORK_DIR") or Path(tempfile.gettempdir()) / "planner-demo")
    folder = base / os.environ.get("PLANNER_RUN_ID", "manual")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def account_factor(account: str) -> float:
    digest = hashlib.sha256(account.encode()).hexdigest()
    return 0.5 + 1.5 * int(digest[:8], 16) / 0xFFFFFFFF


def generate(account: str, quantity: int) -> str:
    rows = max(100, int(quantity * 1000 * account_factor(account)))
    rng = random.Random(f"{account}:{quantity}")
    path = work_dir() / f"{account}.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "account", "category", "amount", "note"])
        for i in range(rows):
            note = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=rng.randint(8, 40)))
            writer.writerow(
                [i, account, rng.choice(CATEGORIES), f"{rng.lognormvariate(3, 1):.2f}", note]
            )
    return f"generated {rows} rows into {path.name}"


def compress(account: str, fail_rate: float) -> str:
    if fail_rate and random.random() < fail_rate:
        print("ConnectionError: storage endpoint reset the connection", file=sys.stderr)
        raise SystemExit(75)
    source = work_dir() / f"{account}.csv"
    target = source.with_suffix(".csv.gz")
    with open(source, "rb") as raw, gzip.open(target, "wb", compresslevel=6) as packed:
        shutil.copyfileobj(raw, packed)
    ratio = target.stat().st_size / max(1, source.stat().st_size)
    return f"compressed {source.name}: ratio {ratio:.2f}"


def checksum(account: str, quantity: int) -> str:
    data = (work_dir() / f"{account}.csv").read_bytes()
    digest = hashlib.sha256()
    for i in range(max(1, quantity // 2)):
        digest.update(i.to_bytes(4, "little"))
        digest.update(data)
    return f"sha256 {digest.hexdigest()[:16]}"


def parse(account: str) -> str:
    with gzip.open(work_dir() / f"{account}.csv.gz", "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows.sort(key=lambda r: float(r["amount"]), reverse=True)
    totals: dict[str, float] = {}
    for row in rows:
        totals[row["category"]] = totals.get(row["category"], 0.0) + float(row["amount"])
    summary = {"account": account, "rows": len(rows), "top": rows[:5], "totals": totals}
    (work_dir() / f"{account}.summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return f"parsed {len(rows)} rows"


def aggregate() -> str:
    totals: dict[str, float] = {}
    rows = 0
    for path in sorted(work_dir().glob("*.summary.json")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        rows += summary["rows"]
        for category, amount in summary["totals"].items():
            totals[category] = totals.get(category, 0.0) + amount
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)
    (work_dir() / "aggregate.json").write_text(json.dumps(ranked), encoding="utf-8")
    return f"aggregated {rows} rows over {len(totals)} categories"


def report() -> str:
    folder = work_dir()
    ranked = json.loads((folder / "aggregate.json").read_text(encoding="utf-8"))
    lines = [f"{category:8} {amount:14.2f}" for category, amount in ranked]
    text = "\n".join(lines)
    shutil.rmtree(folder, ignore_errors=True)
    return "report:\n" + text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "kind", choices=("generate", "compress", "checksum", "parse", "aggregate", "report")
    )
    parser.add_argument("--account", default="")
    parser.add_argument("--quantity", type=int, default=10)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    args = parser.parse_args()
    if args.kind == "generate":
        message = generate(args.account, args.quantity)
    elif args.kind == "compress":
        message = compress(args.account, args.fail_rate)
    elif args.kind == "checksum":
        message = checksum(args.account, args.quantity)
    elif args.kind == "parse":
        message = parse(args.account)
    elif args.kind == "aggregate":
        message = aggregate()
    else:
        message = report()
    print(message)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
