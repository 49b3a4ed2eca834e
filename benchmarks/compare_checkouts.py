#!/usr/bin/env python3
"""Read+batch rates of two checkouts of seqdata on the same dataset, alternating runs.

    python benchmarks/compare_checkouts.py OLD_CHECKOUT NEW_CHECKOUT DATASET [--rounds N]

For a change that should not move speed (a refactor): each round runs one fresh process
per checkout, in turn, timing its first epoch (each shard's hash, and whatever else a
first read checks) and then the best of three later epochs per case; the table shows each
checkout's best over the rounds and their ratio.
Alternating keeps the machine's drift out of the ratio. Both checkouts must accept
``Dataset.batches(mode, **options)``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CASES = {
    "bucketed": {"mode": "bucketed", "batch_size": 1000},
    "padded": {"mode": "padded", "batch_size": 1000},
    "bucketed, one thread": {"mode": "bucketed", "batch_size": 1000, "read_ahead": False},
    "bucketed, one thread, per-sequence shuffle": {"mode": "bucketed", "batch_size": 1000,
                                                   "read_ahead": False, "shuffle_block": 1},
}

EPOCHS = r'''
import json, sys, time
import seqdata
rates = {}
ds = seqdata.open_dataset(sys.argv[1])
start, real = time.perf_counter(), 0
for batch in ds.batches(mode="bucketed", batch_size=1000):  # every shard checked first
    real += batch.num_timesteps
rates["first epoch (checks)"] = real / (time.perf_counter() - start)
for name, options in json.loads(sys.argv[2]).items():
    best = float("inf")
    for _ in range(3):
        start, real = time.perf_counter(), 0
        for batch in ds.batches(**options):
            real += batch.num_timesteps
        best = min(best, time.perf_counter() - start)
    rates[name] = real / best
print(json.dumps(rates))
'''


def rates(checkout: Path, data: Path) -> dict[str, float]:
    """Real timesteps/s per case, measured in a fresh process importing ``checkout``."""
    done = subprocess.run([sys.executable, "-c", EPOCHS, str(data), json.dumps(CASES)],
                          cwd=checkout, env={"PYTHONPATH": str(checkout)},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        runs["old"].append(rates(args.old.resolve(), args.data.resolve()))
        runs["new"].append(rates(args.new.resolve(), args.data.resolve()))
    print(f"{'case':<24} {'old M/s':>8} {'new M/s':>8} {'new/old':>8}")
    for case in ["first epoch (checks)", *CASES]:
        old, new = (max(r[case] for r in runs[k]) for k in ("old", "new"))
        print(f"{case:<24} {old / 1e6:>8.1f} {new / 1e6:>8.1f} {new / old:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
