"""Benchmarks: rates measured side by side in one process run, printed as a table.

    python benchmarks/bench.py [--quick] [--json PATH] [--sequences N]

All rates are real timesteps per second (padding never counts); compare ratios within
one run, not absolute times across runs. Run in the project's virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqdata import BatchConfig, LagSumSpec, build_dataset, open_dataset


def timed(fn: Callable[[], object], repeat: int = 1,
          setup: Callable[[], object] | None = None) -> float:
    """The best wall time of ``repeat`` calls (``setup`` runs before each, untimed)."""
    best = float("inf")
    for _ in range(repeat):
        if setup is not None:
            setup()
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
                timesteps = build_dataset(out, spec, fmt, workers=workers,
                                          progress=False).num_timesteps

            # Unlinking the previous build (~0.3 s for 1M sequences) is not part of a build.
            seconds = timed(build, repeat, setup=lambda out=out: shutil.rmtree(out, True))
            rows.append({"benchmark": "generate+write", "case": f"{fmt}, {workers} worker(s)",
                         "seconds": seconds, "timesteps_per_s": timesteps / seconds})
    rows.append({"benchmark": "generate+write", "case": "floor: numpy draws into memory",
                 "seconds": floor, "timesteps_per_s": total / floor})
    return rows


def _epoch_rate(ds, config: BatchConfig, repeat: int) -> tuple[float, float, float]:
    """(seconds, real timesteps/s, padding) of the best of ``repeat`` epochs of ``ds``."""
    stats: dict[str, int] = {}

    def epoch() -> None:
        real = padded = 0
        for batch in ds.batches(config):
            real += batch.num_timesteps
            padded += batch.mask.size
        stats.update(real=real, padded=padded)

    seconds = timed(epoch, repeat)
    return seconds, stats["real"] / seconds, 1 - stats["real"] / stats["padded"]


def bench_read(spec: LagSumSpec, scratch: Path, repeat: int, peer_sequences: int) -> list[dict]:
    """Read and batch one epoch, per format and mode, against floors and peers.

    Rows are later epochs (each shard's SHA-256 was checked in the first) with the
    default read-ahead thread, plus the first epoch and one thread alone.
    """
    rows = []
    for fmt in ("hdf5", "parquet"):
        path = scratch / f"gen-{fmt}-1"
        ds = open_dataset(path)
        for index in range(len(ds.shards)):
            ds.check_hash(index)  # as in every epoch after the first
        cases = [("bucketed", {}, ""), ("padded", {}, ""),
                 ("bucketed", {"read_ahead": False}, ", one thread"),
                 ("bucketed", {"read_ahead": False, "shuffle_block": 1},
                  ", one thread, per-sequence shuffle")]
        for mode, options, label in cases:
            config = BatchConfig(mode, batch_size=1000, **options)
            seconds, rate, padding = _epoch_rate(ds, config, repeat)
            rows.append({"benchmark": "read+batch", "case": f"{fmt}, {mode}{label}",
                         "seconds": seconds, "timesteps_per_s": rate, "padding": padding})
        seconds, rate, _ = _epoch_rate(open_dataset(path), BatchConfig(batch_size=1000), 1)
        rows.append({"benchmark": "read+batch", "case": f"{fmt}, bucketed, first epoch (hashes)",
                     "seconds": seconds, "timesteps_per_s": rate})
        if fmt == "parquet":
            import pyarrow.parquet as pq

            files = [ds.shard_path(s) for s in ds.shards]
            seconds = timed(lambda files=files: [pq.read_table(f) for f in files], repeat)
            rows.append({"benchmark": "read+batch", "case": "peer: pyarrow read_table (bare)",
                         "seconds": seconds, "timesteps_per_s": ds.num_timesteps / seconds})
    flat = open_dataset(scratch / "gen-hdf5-1").read_all()
    x_out, y_out = np.ones_like(flat.x), np.ones_like(flat.y)  # touched: no page faults

    def copy() -> None:
        np.copyto(x_out, flat.x)
        np.copyto(y_out, flat.y)

    seconds = timed(copy, repeat)
    rows.append({"benchmark": "read+batch", "case": "floor: memory copy of x and y",
                 "seconds": seconds, "timesteps_per_s": len(flat.y) / seconds})
    try:
        from benchmarks.tf_peers import tf_data_peers
    except ImportError as e:
        print(f"# tf.data peers skipped: {e}", file=sys.stderr)
    else:
        rows += tf_data_peers(flat, open_dataset(scratch / "gen-hdf5-1").boundaries,
                              peer_sequences)
    return rows


SMALL_SEQUENCES = 200_000  # 7 shards of the default chunk size: a first try's dataset


def bench_epochs(spec: LagSumSpec, scratch: Path, repeat: int, epochs: int = 4) -> list[dict]:
    """Epochs back to back through a `BatchStream` (what the bridges and the trainer
    read), per epoch, on the full dataset and a 7-shard one, per format.

    With few shards, an epoch's first window read and its last window's batching are a
    large part of it; a stream reads the next epoch's first window during the last.
    """
    from seqdata import BatchStream

    rows = []
    config = BatchConfig(batch_size=1000)
    for fmt in ("hdf5", "parquet"):
        small = scratch / f"small-{fmt}"
        build_dataset(small, replace(spec, num_sequences=min(SMALL_SEQUENCES,
                                                              spec.num_sequences)),
                      fmt, progress=False)
        cases = {}
        for path in (scratch / f"gen-{fmt}-1", small):
            ds = open_dataset(path)
            for index in range(len(ds.shards)):
                ds.check_hash(index)
            stream, size = BatchStream(ds, config), ds.num_batches(config)
            batches = iter(stream)
            for _ in range(size):  # the first epoch: its read starts cold
                next(batches)
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                for _ in range(size * epochs):
                    next(batches)
                best = min(best, (time.perf_counter() - start) / epochs)
            batches.close()
            cases[len(ds.shards)] = (best, ds.num_timesteps / best)
        full = cases[max(cases)][1]
        for shards, (seconds, rate) in sorted(cases.items(), reverse=True):
            rows.append({"benchmark": "read+batch", "seconds": seconds, "timesteps_per_s": rate,
                         "case": f"{fmt}, bucketed, {epochs} epochs streamed, {shards} shards"
                                 + ("" if rate == full else f" ({rate / full:.2f} of all)")})
    return rows


def _touch(batch) -> None:
    """A consumer that only touches a batch (one value a sequence): pure loading."""
    x = batch["x"] if isinstance(batch, dict) else batch.x
    x[:, 0, 0].sum()


def _waits(batch) -> None:
    """A consumer that touches a batch, then waits 2 ms with the CPU idle, as the host
    does while an accelerator runs the step."""
    _touch(batch)
    time.sleep(0.002)


def _cpu_step(num_features: int) -> Callable[[object], None]:
    """A training step on the CPU: ``tanh(x W1) W2`` (16 units), a masked logistic loss,
    backward and an SGD update: ~3-4 ms a batch of 1000 here, in one torch thread."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    w1 = torch.randn(num_features, 16, generator=g).requires_grad_()
    w2 = torch.randn(16, 1, generator=g).requires_grad_()

    def step(batch) -> None:
        if not isinstance(batch, dict):  # numpy batches: tensors sharing their memory
            batch = {name: torch.from_numpy(getattr(batch, name)) for name in ("x", "y", "mask")}
        mask = batch["mask"]
        logits = (torch.tanh(batch["x"] @ w1) @ w2).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logits[mask], batch["y"][mask].float())
        loss.backward()
        with torch.no_grad():
            for w in (w1, w2):
                w -= 0.01 * w.grad
                w.grad = None

    return step


def _epoch(batches, step: Callable[[object], None]) -> None:
    for batch in batches:
        step(batch)


def _seconds_per_epoch(source: Callable[[], object], step: Callable[[object], None],
                       epochs: int) -> float:
    """Seconds per epoch of ``epochs`` epochs of ``source()`` back to back, after one
    untimed (as in training, what an epoch leaves running, a persistent worker's start
    of the next pass, counts in the next), then a pause so that it does not count in
    the next case."""
    _epoch(source(), step)
    start = time.perf_counter()
    for _ in range(epochs):
        _epoch(source(), step)
    seconds = (time.perf_counter() - start) / epochs
    time.sleep(0.5)
    return seconds


def bench_torch(scratch: Path, repeat: int) -> list[dict]:
    """`seqdata.torch.loader`'s epochs of tensors against the numpy batches they come
    from, with 0 workers and with 2 (a new loader each epoch, forking its workers, or
    persistent workers), under three consumers:

    - touch: pure loading (what the workers add or cost on their own);
    - step waits 2 ms: the CPU idle during the step, as with a GPU;
    - CPU step: `_cpu_step` in one torch thread (torch's default here is 2 threads, one
      a core, which then fight the workers for the 2 cores).

    Each figure is the best of ``repeat`` rounds (cases interleaved) of 2 epochs back to
    back after an untimed one. Workers each plan the whole epoch from lengths and ids
    (the "plan" row) and read only their own batches' rows (byte ranges of the HDF5
    shards and of the Parquet pages), padded straight into shared memory that the main
    process maps. Shards are checked (SHA-256) before, as in every epoch after the first.
    """
    try:
        import torch

        from seqdata.torch import BatchDataset, loader  # BatchDataset imports torch
    except ImportError as e:
        print(f"# torch rows skipped: {e}", file=sys.stderr)
        return []
    rows = []
    config = BatchConfig(batch_size=1000)
    threads = torch.get_num_threads()
    for fmt in ("hdf5", "parquet"):
        ds = open_dataset(scratch / f"gen-{fmt}-1")
        ds.check_unchecked()  # as in every epoch after the first
        consumers = {"touch": _touch, "step waits 2 ms": _waits,
                     "CPU step, 1 thread": _cpu_step(ds.num_features)}
        for label, step in consumers.items():
            torch.set_num_threads(1 if label.startswith("CPU") else threads)
            persistent = loader(BatchDataset(ds, config), num_workers=2,
                                persistent_workers=True)
            sources = {
                "numpy batches": lambda ds=ds: ds.batches(config),
                "tensors, 0 workers": lambda ds=ds: loader(BatchDataset(ds, config)),
                "tensors, 2 workers, new loader each epoch": lambda ds=ds: loader(
                    BatchDataset(ds, config), num_workers=2),
                "tensors, 2 persistent workers": lambda p=persistent: p,
            }
            seconds = dict.fromkeys(sources, float("inf"))
            for _ in range(repeat):  # interleaved: a slow moment hits every case alike
                for name, source in sources.items():
                    seconds[name] = min(seconds[name],
                                        _seconds_per_epoch(source, step, epochs=2))
            del persistent, sources
            for name, s in seconds.items():
                row = {"benchmark": "torch", "case": f"{fmt}, {label}: {name}", "seconds": s,
                       "timesteps_per_s": ds.num_timesteps / s}
                if name != "numpy batches":
                    row["vs_numpy"] = seconds["numpy batches"] / s
                rows.append(row)
        torch.set_num_threads(threads)
        # What each worker pays before its own batches: planning the epoch.
        seconds = timed(lambda ds=ds: ds.plan(config), repeat)
        rows.append({"benchmark": "torch", "case": f"{fmt}, plan (lengths and ids)",
                     "seconds": seconds})
    return rows


def peak_memory(path: Path, options: dict) -> int:
    """Peak resident memory (bytes) of a fresh process that streams one epoch of ``path``."""
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
    code = ("import seqdata\n"
            f"ds = seqdata.open_dataset({str(path)!r})\n"
            f"for b in ds.batches(seqdata.BatchConfig(**{options!r})): pass\n"
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[-2]) * 1024


def bench_memory(spec: LagSumSpec, scratch: Path) -> list[dict]:
    """Peak memory of streaming at two dataset sizes 4x apart."""
    rows = []
    # At least 8 shards: a dataset of one window holds no carry-over, a larger one does.
    base = max(spec.num_sequences // 4, spec.chunk_size * 8)
    for n in (base, 4 * base):
        out = scratch / f"mem-{n}"
        build_dataset(out, replace(spec, num_sequences=n), overwrite=True, progress=False)
        peak = peak_memory(out, {"mode": "bucketed", "batch_size": 1000})
        rows.append({"benchmark": "stream memory", "case": f"{n:,} sequences, bucketed",
                     "peak_rss_mb": peak / 2**20})
        shutil.rmtree(out)
    return rows


def bench_train(scratch: Path, steps: int) -> list[dict]:
    """Training through the trainer (needs the train extra: TensorFlow)."""
    try:
        from benchmarks.train_cpu import bench_training
    except ImportError as e:
        print(f"# training benchmark skipped: {e}", file=sys.stderr)
        return []
    return bench_training(open_dataset(scratch / "gen-hdf5-1"), steps)


def print_table(rows: list[dict]) -> None:
    print(f"{'benchmark':<16} {'case':<52} {'seconds':>8} {'M timesteps/s':>14} "
          f"{'padding':>8} {'other':>12}")
    for r in rows:
        seconds = f"{r['seconds']:.3f}" if "seconds" in r else ""
        rate = f"{r['timesteps_per_s'] / 1e6:.2f}" if "timesteps_per_s" in r else ""
        pad = f"{r['padding']:.1%}" if "padding" in r else ""
        other = (f"{r['peak_rss_mb']:.0f} MiB" if "peak_rss_mb" in r else
                 f"{r['input_wait']:.1%} wait" if "input_wait" in r else
                 f"{r['vs_numpy']:.0%} of numpy" if "vs_numpy" in r else "")
        print(f"{r['benchmark']:<16} {r['case']:<52} {seconds:>8} {rate:>14} {pad:>8} "
              f"{other:>12}")


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
    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="seqdata-bench-", dir=args.scratch))
    try:
        print(f"# {n:,} default sequences, {os.cpu_count()} cores, scratch {scratch}",
              file=sys.stderr)
        rows = bench_generate(spec, scratch, repeat)
        rows += bench_read(spec, scratch, repeat, peer_sequences=20_000 if args.quick else 50_000)
        rows += bench_epochs(spec, scratch, repeat)
        rows += bench_torch(scratch, repeat)
        rows += bench_memory(spec, scratch)
        rows += bench_train(scratch, steps=10 if args.quick else 60)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"sequences": n, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
