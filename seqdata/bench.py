"""Benchmarks: rates measured side by side in one process run, printed as a table.

    python -m seqdata.bench [--quick] [--json PATH] [--sequences N]

All rates are real timesteps per second (padding never counts); compare ratios within
one run, not absolute times across runs. Run in the project's virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seqdata.build import build_dataset
from seqdata.dataset import open_dataset
from seqdata.spec import LagSumSpec


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """The best wall time of ``repeat`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_generate(spec: LagSumSpec, scratch: Path, repeat: int) -> list[dict]:
    """Generate and write, per format and worker count, against numpy's draws alone."""
    rows = []
    total = None

    def draw() -> None:
        nonlocal total
        total = 0
        for chunk in range(spec.num_chunks):
            rng = np.random.default_rng(np.random.SeedSequence([spec.seed, chunk]))
            lengths = spec.lengths.sample(rng, spec.chunk_size)
            n = int(lengths.sum())
            rng.random((n, spec.num_features), dtype=np.float32)
            total += n

    floor = timed(draw, repeat)
    timesteps = None
    for fmt in ("hdf5", "parquet"):
        for workers in (1, 2):
            out = scratch / f"gen-{fmt}-{workers}"

            def build(out: Path = out, fmt: str = fmt, workers: int = workers) -> None:
                nonlocal timesteps
                timesteps = build_dataset(out, spec, fmt, workers=workers, overwrite=True,
                                          progress=False).num_timesteps

            seconds = timed(build, repeat)
            rows.append({"benchmark": "generate+write", "case": f"{fmt}, {workers} worker(s)",
                         "seconds": seconds, "timesteps_per_s": timesteps / seconds})
    rows.append({"benchmark": "generate+write", "case": "floor: numpy draws into memory",
                 "seconds": floor, "timesteps_per_s": total / floor})
    return rows


def bench_read(spec: LagSumSpec, scratch: Path, repeat: int) -> list[dict]:
    """Read and batch one epoch, per format and mode, one core."""
    rows = []
    for fmt in ("hdf5", "parquet"):
        ds = open_dataset(scratch / f"gen-{fmt}-1")
        for mode, options in (("bucketed", {"batch_size": 1000}),
                              ("padded", {"batch_size": 1000})):
            stats = {}

            def epoch(ds=ds, mode=mode, options=options, stats=stats) -> None:
                real = padded = 0
                for batch in ds.batches(mode, **options):
                    real += batch.num_timesteps
                    padded += batch.mask.size
                stats.update(real=real, padded=padded)

            seconds = timed(epoch, repeat)
            rows.append({"benchmark": "read+batch", "case": f"{fmt}, {mode}",
                         "seconds": seconds, "timesteps_per_s": stats["real"] / seconds,
                         "padding": 1 - stats["real"] / stats["padded"]})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'benchmark':<16} {'case':<34} {'seconds':>8} {'M timesteps/s':>14} {'padding':>8}")
    for r in rows:
        pad = f"{r['padding']:.1%}" if "padding" in r else ""
        print(f"{r['benchmark']:<16} {r['case']:<34} {r['seconds']:>8.3f} "
              f"{r['timesteps_per_s'] / 1e6:>14.1f} {pad:>8}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqdata-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one repeat")
    parser.add_argument("--sequences", type=int, default=None,
                        help="sequences to generate (default 1,000,000; --quick 200,000)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--scratch", type=Path, default=None, help="where to write data")
    args = parser.parse_args(argv)
    n = args.sequences or (200_000 if args.quick else 1_000_000)
    repeat = 1 if args.quick else 2
    spec = LagSumSpec(num_sequences=n, seed=0)
    scratch = Path(tempfile.mkdtemp(prefix="seqdata-bench-", dir=args.scratch))
    try:
        print(f"# {n:,} default sequences, {os.cpu_count()} cores, scratch {scratch}",
              file=sys.stderr)
        rows = bench_generate(spec, scratch, repeat) + bench_read(spec, scratch, repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"sequences": n, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
