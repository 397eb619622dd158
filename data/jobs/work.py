"""A real unit of work for example pipelines: hash generated data, sized by quantity.

    python data/jobs/work.py --quantity 500 [--account acct-001] [--kind collect]
        [--fail-rate 0.0] [--scale 1.0]

It hashes ``quantity x scale`` blocks of 64 KiB of pseudo-random data (seeded by account
and kind), so its duration grows with the quantity and differs per account. With
``--fail-rate`` it exits 75 (a transient, retryable failure) that often.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quantity", type=int, default=100)
    parser.add_argument("--account", default="")
    parser.add_argument("--kind", default="work")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    args = parser.parse_args()
    seed = f"{args.kind}:{args.account}"
    rng = random.Random(seed)
    if args.fail_rate and random.random() < args.fail_rate:
        print("ConnectionError: upstream reset the connection", file=sys.stderr)
        return 75
    # Accounts differ in size: a stable factor between 0.5 and 2 per account.
    factor = 0.5 + 1.5 * (int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF)
    blocks = max(1, int(args.quantity * args.scale * factor))
    block = rng.randbytes(65536)
    digest = hashlib.sha256()
    for i in range(blocks):
        digest.update(block)
        digest.update(i.to_bytes(8, "little"))
    print(f"{args.kind} {args.account or '-'}: {blocks} blocks, sha256 {digest.hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
