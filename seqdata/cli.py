"""The ``seqdata`` command: generate, inspect, verify, convert datasets; list, prune the cache.

Thin: parse, call one library function, report. Every user mistake is one line on
stderr and exit status 2; verify exits 1 when it finds damage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqdata.buckets import expected_padding, padding_alternatives
from seqdata.cli_common import (
    EXIT_DAMAGED,
    EXIT_OK,
    OneLineParser,
    bounded_int,
    byte_size,
    finite_float,
    int_list,
    run_command,
)
from seqdata.errors import SpecError
from seqdata.progress import format_bytes
from seqdata.spec import DEFAULT_CHUNK_SIZE, LagSumSpec, LogNormalLengths, UniformLengths
from seqdata.store.cache import CachedVersion
from seqdata.store.card import CARD_NAME, histogram_lines
from seqdata.store.formats import FORMAT_NAMES
from seqdata.store.manifest import DATA_DIR, padding_fraction
from seqdata.store.remote import join


def add_bucket_arguments(p: argparse.ArgumentParser, default: str) -> None:
    """``--boundaries`` or ``--num-buckets`` (one of them); ``default`` says what neither
    gives."""
    buckets = p.add_mutually_exclusive_group()
    buckets.add_argument("--boundaries", type=int_list(), default=None, metavar="B1,B2,...",
                         help="inclusive upper length of each bucket")
    buckets.add_argument("--num-buckets", type=bounded_int(1, 4096), default=None,
                         help=f"number of buckets (boundaries minimise padding); default: "
                              f"{default}")

def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``seqdata generate`` (shared with scripts/generate.py)."""
    p.add_argument("out", help="output directory (created; must be empty), or an fsspec "
                               "URL (s3://..., file://...; needs the remote extra)")
    p.add_argument("--format", choices=FORMAT_NAMES, default="hdf5", help="shard format")
    p.add_argument("--num-sequences", type=bounded_int(1), default=100_000, metavar="N")
    p.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=0, metavar="S")
    p.add_argument("--num-features", type=bounded_int(1, 4096), default=5, metavar="F")
    p.add_argument("--window", type=bounded_int(1, 4096), default=5, metavar="K",
                   help="past timesteps the label sums (K <= F)")
    p.add_argument("--threshold", type=finite_float, default=2.5)
    p.add_argument("--lengths", choices=("uniform", "lognormal"), default="uniform",
                   help="length distribution (default uniform 10..99, the seed's)")
    p.add_argument("--min-length", type=bounded_int(1), default=None)
    p.add_argument("--max-length", type=bounded_int(1), default=None)
    p.add_argument("--length-median", type=finite_float, default=None,
                   help="lognormal only (default 40)")
    p.add_argument("--length-sigma", type=finite_float, default=None,
                   help="lognormal only (default 0.6)")
    p.add_argument("--chunk-size", type=bounded_int(1), default=DEFAULT_CHUNK_SIZE,
                   help="sequences per chunk and shard")
    p.add_argument("--seed-compat-leak", action="store_true",
                   help="reproduce the seed's aliasing bug: feature 0 holds the lag sum")
    add_bucket_arguments(p, "the fewest buckets with at most 2%% expected padding")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=bounded_int(1, 1024), default=1,
                       help="local worker processes")
    where.add_argument("--scheduler", default=None,
                       help="run the chunks on a Dask cluster: its scheduler's address "
                            "(tcp://HOST:PORT; every worker must see OUT at the same path), "
                            "or local:N for N local Dask workers (needs the dask extra)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true",
                       help="replace the seqdata dataset already in OUT")
    again.add_argument("--resume", action="store_true",
                       help="finish an interrupted build in OUT (same options): keep the "
                            "shards that hash right, rebuild the rest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def spec_from_args(args: argparse.Namespace) -> LagSumSpec:
    low = 10 if args.min_length is None else args.min_length
    if args.lengths == "uniform":
        if args.length_median is not None or args.length_sigma is not None:
            raise SpecError("--length-median and --length-sigma go with --lengths lognormal")
        lengths = UniformLengths(low, 99 if args.max_length is None else args.max_length)
    else:
        defaults = LogNormalLengths()
        lengths = LogNormalLengths(
            defaults.median if args.length_median is None else args.length_median,
            defaults.sigma if args.length_sigma is None else args.length_sigma,
            low, defaults.high if args.max_length is None else args.max_length)
    return LagSumSpec(num_features=args.num_features, window=args.window,
                      threshold=args.threshold, lengths=lengths,
                      num_sequences=args.num_sequences, seed=args.seed,
                      chunk_size=args.chunk_size, seed_compat_leak=args.seed_compat_leak)


def run_generate(args: argparse.Namespace) -> int:
    from seqdata.store.build import build_dataset

    manifest = build_dataset(args.out, spec_from_args(args), args.format,
                             boundaries=args.boundaries, num_buckets=args.num_buckets,
                             workers=args.workers, overwrite=args.overwrite,
                             progress=not args.quiet, resume=args.resume,
                             scheduler=args.scheduler)
    leak = " (LEAKY: --seed-compat-leak)" if manifest.leaky else ""
    print(f"wrote {manifest.num_sequences:,} sequences ({manifest.num_timesteps:,} timesteps) "
          f"in {len(manifest.shards)} {manifest.format} shards, {len(manifest.boundaries)} "
          f"buckets, to {args.out}{leak}")
    return EXIT_OK


def run_inspect(args: argparse.Namespace) -> int:
    from seqdata.read.dataset import open_dataset

    ds = open_dataset(args.dir)
    m = ds.manifest
    spec = m.spec
    seqs, steps = m.bucket_sequences, m.bucket_timesteps
    pad = padding_fraction(seqs, steps, m.boundaries)
    total_pad = 1.0 - m.num_timesteps / float(np.dot(seqs, m.boundaries))
    if args.json:
        print(json.dumps({
            "path": ds.location, "format": m.format, "spec": spec.to_dict(), "leaky": m.leaky,
            "num_shards": len(m.shards), "num_sequences": m.num_sequences,
            "num_timesteps": m.num_timesteps, "boundaries": list(m.boundaries),
            "bucket_sequences": seqs.tolist(), "bucket_timesteps": steps.tolist(),
            "bucket_padding": [None if np.isnan(v) else float(v) for v in pad],
            "padding": total_pad}, indent=1))
        return EXIT_OK
    lengths = spec.lengths
    dist = (f"uniform {lengths.low}..{lengths.high}" if lengths.kind == "uniform" else
            f"lognormal median {lengths.median} sigma {lengths.sigma} clipped to "
            f"{lengths.low}..{lengths.high}")
    size = sum(s.size for s in m.shards)
    out = [f"dataset    {ds.location} ({m.format}, {len(m.shards)} shards, {format_bytes(size)})",
           f"spec       {spec.num_features} features, window {spec.window}, threshold "
           f"{spec.threshold}, lengths {dist}, seed {spec.seed}, chunk size {spec.chunk_size}"]
    if m.leaky:
        out.append("LEAKY      built with --seed-compat-leak: feature 0 holds the lag sum, so "
                   "the label leaks into the input")
    if m.version < 2:
        out.append(f"layout     old (manifest_version {m.version}: shards beside the manifest, "
                   f"no card); `seqdata convert {ds.location} NEW` writes the current one")
    else:
        out.append(f"card       {join(ds.location, CARD_NAME)} (how to load it in pandas, "
                   f"DuckDB, Hugging Face, PyTorch, JAX, Keras); shards in "
                   f"{join(ds.location, DATA_DIR)}")
    out += [f"sequences  {m.num_sequences:,}   timesteps {m.num_timesteps:,}   mean length "
            f"{m.num_timesteps / m.num_sequences:.1f}",
            f"buckets    {len(m.boundaries)}; padding if padded to bucket bounds: "
            f"{total_pad:.2%} (expected from the distribution: "
            f"{expected_padding(lengths.pmf(), lengths.low, m.boundaries):.2%})",
            "expected padding of other choices (this dataset's lengths): " + ", ".join(
                f"{label} {pad_:.2%}" for label, _, pad_ in padding_alternatives(
                    np.asarray(m.length_counts) / m.num_sequences, lengths.low,
                    m.boundaries)[1:]),
            f"  {'bucket':>6} {'lengths':>11} {'sequences':>11} {'timesteps':>13} {'padding':>8}"]
    lows = [lengths.low, *(b + 1 for b in m.boundaries[:-1])]
    for b, (lo, hi) in enumerate(zip(lows, m.boundaries, strict=True)):
        frac = "-" if np.isnan(pad[b]) else f"{pad[b]:.1%}"
        out.append(f"  {b:>6} {f'{lo}..{hi}':>11} {seqs[b]:>11,} {steps[b]:>13,} {frac:>8}")
    out.append(f"length histogram ({lengths.low}..{lengths.high}):")
    out += histogram_lines(lengths.low, m.length_counts)
    if args.plot is not None:
        from seqdata.plot import plot_buckets

        plot_buckets(m, args.plot)
        out.append(f"plot written to {args.plot}")
    print("\n".join(out))
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    from seqdata.store.verify import verify_dataset

    report = verify_dataset(args.dir, labels=args.labels, progress=not args.quiet)
    checked = "hashes, schema, counts" + (" and labels" if args.labels else "")
    if report.leaky:
        print(f"{args.dir}: LEAKY dataset (--seed-compat-leak): feature 0 holds the lag sum")
    if report.ok:
        for note in report.notes:
            print(f"{args.dir}: note: {note}")
        print(f"{args.dir}: OK ({report.num_shards} shards; checked {checked})")
        return EXIT_OK
    for note in report.notes:
        print(f"{args.dir}: note: {note}")
    for problem in report.problems:
        print(f"BAD {join(args.dir, problem.shard)}: {problem.message}")
    print(f"{args.dir}: {len(report.bad_shards)} of {report.num_shards} shards damaged",
          file=sys.stderr)
    return EXIT_DAMAGED


def run_convert(args: argparse.Namespace) -> int:
    from seqdata.store.convert import convert_dataset

    m = convert_dataset(args.src, args.dst, args.format, boundaries=args.boundaries,
                        num_buckets=args.num_buckets, overwrite=args.overwrite,
                        progress=not args.quiet)
    print(f"converted {m.num_sequences:,} sequences ({m.num_timesteps:,} timesteps) from "
          f"{args.src} to {args.dst}: {len(m.shards)} {m.format} shards, "
          f"{len(m.boundaries)} buckets")
    return EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _version_line(v: CachedVersion) -> str:
    used = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.last_used))
    return (f"{format_bytes(v.size):>10}  {_count(v.shards, 'shard'):>10}  last used {used}"
            f"{'  IN USE' if v.in_use else ''}  {v.url} (version {v.path.name})")


def run_cache(args: argparse.Namespace) -> int:
    from seqdata.store.cache import cache_root, prune, read_cache

    root = cache_root(args.cache)
    if args.action == "list":
        contents = read_cache(root)
        for version in contents.versions:
            print(_version_line(version))
        for url, size in contents.staging:
            print(f"{format_bytes(size):>10}  a build's staging for {url} (never pruned)")
        print(f"{root}: {_count(len(contents.versions), 'dataset version')}, "
              f"{format_bytes(contents.size)} in all")
        return EXIT_OK
    removed, before = prune(args.max_size, root, dry_run=args.dry_run)
    for version in removed:
        print(("would remove " if args.dry_run else "removed ") + _version_line(version))
    kept = sum(v.size for v in before.versions) - sum(v.size for v in removed)
    busy = sum(v.in_use for v in before.versions)
    print(f"{root}: dataset versions {'would take' if args.dry_run else 'take'} "
          f"{format_bytes(kept)}, limit {format_bytes(args.max_size)}"
          + (f"; {_count(busy, 'version')} in use kept" if busy and kept > args.max_size
             else ""))
    return EXIT_OK


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="seqdata", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    gen = sub.add_parser("generate", help="generate a lag-sum dataset as bucketed shards")
    add_generate_arguments(gen)
    gen.set_defaults(run=run_generate)
    ins = sub.add_parser("inspect", help="show a dataset's spec, counts, buckets, histogram")
    ins.add_argument("dir", help="dataset directory or URL")
    ins.add_argument("--json", action="store_true", help="machine-readable summary")
    ins.add_argument("--plot", type=Path, default=None, metavar="FILE.png",
                     help="draw the length histogram, boundaries and padding per bucket")
    ins.set_defaults(run=run_inspect)
    ver = sub.add_parser("verify", help="check every shard against the manifest")
    ver.add_argument("dir", help="dataset directory or URL")
    ver.add_argument("--labels", action="store_true", help="also recompute every label from x")
    ver.add_argument("--quiet", action="store_true", help="no progress bar")
    ver.set_defaults(run=run_verify)
    con = sub.add_parser("convert", help="write a dataset's sequences in another format or "
                                         "bucketing, in the current layout")
    con.add_argument("src", help="dataset directory or URL to read (either layout)")
    con.add_argument("dst", help="output directory or URL (created; must be empty)")
    con.add_argument("--format", choices=FORMAT_NAMES, default=None,
                     help="shard format (default: the source's)")
    add_bucket_arguments(con, "the source's boundaries")
    con.add_argument("--overwrite", action="store_true",
                     help="replace the seqdata dataset already in DST")
    con.add_argument("--quiet", action="store_true", help="no progress bar")
    con.set_defaults(run=run_convert)
    cache = sub.add_parser("cache", help="list or prune the local cache of datasets read "
                                         "from URLs")
    actions = cache.add_subparsers(dest="action", required=True, parser_class=OneLineParser)
    for name, text in (("list", "every cached dataset version: size, shards, last use"),
                       ("prune", "remove the least recently used versions not in use")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--cache", type=Path, default=None, metavar="DIR",
                            help="the cache directory (default: $SEQDATA_CACHE, else "
                                 "~/.cache/seqdata)")
        if name == "prune":
            action.add_argument("--max-size", type=byte_size, required=True, metavar="SIZE",
                                help="what the versions may take after pruning: 20G, "
                                     "500M, 0 (every version not in use)")
            action.add_argument("--dry-run", action="store_true",
                                help="say what would be removed; remove nothing")
    cache.set_defaults(run=run_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args, f"seqdata {args.command}", parser)


if __name__ == "__main__":
    sys.exit(main())
