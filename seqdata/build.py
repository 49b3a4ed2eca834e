"""Build a dataset: plan chunks, run them (in-process or on local processes), publish.

Every chunk is an independent task (generate -> group by bucket -> encode -> hash ->
atomic write) that returns its `ShardInfo`, so any executor can run them. The manifest is
written last: a directory without one is an unfinished build, never a wrong dataset.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from seqdata.atomic import TMP_SUFFIX, atomic_output, file_sha256
from seqdata.buckets import auto_boundaries, check_boundaries, optimal_boundaries
from seqdata.errors import OutputError, SpecError
from seqdata.formats import SUFFIXES, get_format
from seqdata.generate import generate_chunk
from seqdata.manifest import MANIFEST_NAME, Manifest, ShardInfo, write_manifest
from seqdata.progress import Progress
from seqdata.spec import LagSumSpec

SHARD_PATTERN = re.compile(r"shard-\d{5,}\.(h5|parquet)(\.tmp)?")


def shard_name(chunk: int, fmt: str) -> str:
    return f"shard-{chunk:05d}{SUFFIXES[fmt]}"


def resolve_boundaries(spec: LagSumSpec, boundaries: Sequence[int] | None = None,
                       num_buckets: int | None = None) -> tuple[int, ...]:
    """Explicit boundaries, the optimal ones for ``num_buckets``, or the automatic choice."""
    if boundaries is not None and num_buckets is not None:
        raise SpecError("give either boundaries or a number of buckets, not both")
    low, high = spec.lengths.low, spec.lengths.high
    if boundaries is not None:
        return check_boundaries(boundaries, low, high)
    pmf = spec.lengths.pmf()
    if num_buckets is not None:
        if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 1:
            raise SpecError(f"the number of buckets must be an integer >= 1, got {num_buckets!r}")
        return optimal_boundaries(pmf, low, num_buckets)
    return auto_boundaries(pmf, low)


def build_shard(spec: LagSumSpec, chunk: int, fmt: str, boundaries: tuple[int, ...],
                out: str) -> tuple[ShardInfo, np.ndarray]:
    """Generate, encode and publish one shard; returns its info and length counts."""
    seqs = generate_chunk(spec, chunk)
    lengths = seqs.lengths  # sorted ascending, so each bucket is one run
    cuts = np.searchsorted(lengths, boundaries, side="right")
    starts = np.concatenate(([0], cuts[:-1]))
    runs = [(b, int(a), int(e)) for b, (a, e) in enumerate(zip(starts, cuts, strict=True))
            if e > a]
    name = shard_name(chunk, fmt)
    with atomic_output(Path(out) / name) as tmp:
        get_format(fmt).write(tmp, seqs, runs, chunk)
        size, digest = tmp.stat().st_size, file_sha256(tmp)
    steps = seqs.offsets[cuts] - seqs.offsets[starts]
    info = ShardInfo(name, chunk, tuple((cuts - starts).tolist()), tuple(steps.tolist()), size,
                     digest)
    span = spec.lengths.high - spec.lengths.low + 1
    return info, np.bincount(lengths - spec.lengths.low, minlength=span)


def prepare_output(out: Path, overwrite: bool) -> None:
    """Make ``out`` an empty directory, refusing to replace anything but a seqdata dataset."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {out} is not writable")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not overwrite:
        raise OutputError(f"output directory {out} is not empty ({len(entries)} entries); "
                          f"pass --overwrite to replace the dataset in it")
    foreign = [e for e in entries if e != MANIFEST_NAME and e != MANIFEST_NAME + TMP_SUFFIX
               and not SHARD_PATTERN.fullmatch(e)]
    if foreign:
        raise OutputError(f"output directory {out} holds files that are not part of a seqdata "
                          f"dataset ({', '.join(foreign[:3])}); refusing to overwrite it")
    # Manifest first: from here on the directory reads as an unfinished build.
    for name in sorted(entries, key=lambda e: e != MANIFEST_NAME):
        try:
            (out / name).unlink()
        except OSError as e:
            raise OutputError(f"cannot remove {out / name}: {e.strerror or e}") from None


def _run_chunks(spec: LagSumSpec, fmt: str, boundaries: tuple[int, ...], out: Path,
                workers: int) -> Iterator[tuple[ShardInfo, np.ndarray]]:
    chunks = range(spec.num_chunks)
    if workers == 1:
        for c in chunks:
            yield build_shard(spec, c, fmt, boundaries, str(out))
        return
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(build_shard, spec, c, fmt, boundaries, str(out)) for c in chunks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def build_dataset(out: Path | str, spec: LagSumSpec, fmt: str = "hdf5",
                  boundaries: Sequence[int] | None = None, num_buckets: int | None = None,
                  workers: int = 1, overwrite: bool = False, progress: bool = True) -> Manifest:
    """Generate ``spec`` into directory ``out`` as ``fmt`` shards plus a manifest.

    >>> import tempfile
    >>> m = build_dataset(tempfile.mkdtemp(), LagSumSpec(num_sequences=50), progress=False)
    >>> m.num_sequences, m.format
    (50, 'hdf5')
    """
    get_format(fmt)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SpecError(f"workers must be an integer >= 1, got {workers!r}")
    bounds = resolve_boundaries(spec, boundaries, num_buckets)
    out = Path(out)
    prepare_output(out, overwrite)
    shards: list[ShardInfo | None] = [None] * spec.num_chunks
    counts = np.zeros(spec.lengths.high - spec.lengths.low + 1, np.int64)
    bar = Progress(spec.num_chunks, f"generate {out.name}", enabled=progress)
    for info, length_counts in _run_chunks(spec, fmt, bounds, out, min(workers, spec.num_chunks)):
        shards[info.chunk] = info
        counts += length_counts
        bar.advance(info.num_sequences, info.num_timesteps)
    manifest = Manifest(spec, fmt, bounds, tuple(s for s in shards if s is not None),
                        tuple(int(c) for c in counts))
    write_manifest(out, manifest)
    return manifest
