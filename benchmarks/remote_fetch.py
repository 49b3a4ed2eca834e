"""Fetching a dataset's shards from a URL into the cache, and an epoch read from it.

    python benchmarks/remote_fetch.py [--num-sequences N] [--url URL] [--ahead 1,2,4,8]

Builds a dataset at ``file://`` in a temporary directory (or reads ``--url``), then for
each read-ahead depth, with an empty cache each time: every shard fetched in order
(downloaded, size and SHA-256 checked, renamed into the cache), in MB/s, alone and with
the check a first read adds; then bucketed epochs read from the URL (empty cache, warm cache) and
from the directory itself, in timesteps/s. docs/SCALING.md, *Remote storage*.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from seqdata import LagSumSpec, build_dataset, open_dataset


def epoch_rate(ds) -> float:
    start = time.perf_counter()
    steps = sum(int(b.lengths.sum()) for b in ds.batches("bucketed"))
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-sequences", type=int, default=400_000)
    parser.add_argument("--url", default=None, help="a dataset to read (default: build one)")
    parser.add_argument("--ahead", default="1,2,4,8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seqdata-remote-", dir="/tmp") as tmp:
        url = args.url
        if url is None:
            local = Path(tmp) / "ds"
            build_dataset(local, LagSumSpec(num_sequences=args.num_sequences), workers=2,
                          progress=False)
            url = local.as_uri()
        ds = open_dataset(url, cache=Path(tmp) / "probe")
        total = sum(s.size for s in ds.shards)
        print(f"{url}: {len(ds.shards)} shards, {total / 1e6:.0f} MB, "
              f"{ds.num_timesteps / 1e6:.1f}M timesteps")
        for depth in map(int, args.ahead.split(",")):
            cold = open_dataset(url, cache=Path(tmp) / f"fetch-{depth}", fetch_ahead=depth)
            start = time.perf_counter()
            cold.remote.expect(range(len(cold.shards)))
            for index in range(len(cold.shards)):
                cold.remote.fetch(index)
            fetched = time.perf_counter() - start
            cold.check_unchecked()  # what a first read checks: SHA-256 and content
            checked = time.perf_counter() - start
            print(f"{depth} fetches ahead: {total / fetched / 1e6:6.0f} MB/s fetched, "
                  f"{total / checked / 1e6:6.0f} MB/s with the first read's check")
        # A first epoch of a new Dataset checks each shard (SHA-256, content) as it
        # reads it; a later epoch reads only.
        cold = open_dataset(url, cache=Path(tmp) / "epoch")
        print(f"first epoch, URL, empty cache:  {epoch_rate(cold) / 1e6:5.1f}M timesteps/s")
        warm = open_dataset(url, cache=Path(tmp) / "epoch")
        print(f"first epoch, URL, warm cache:   {epoch_rate(warm) / 1e6:5.1f}M timesteps/s")
        print(f"later epoch, URL:               {epoch_rate(warm) / 1e6:5.1f}M timesteps/s")
        if args.url is None:
            ds = open_dataset(local)
            print(f"first epoch, local directory:   {epoch_rate(ds) / 1e6:5.1f}M timesteps/s")
            print(f"later epoch, local directory:   {epoch_rate(ds) / 1e6:5.1f}M timesteps/s")

if __name__ == "__main__":
    main()
