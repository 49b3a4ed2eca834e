"""Build a dataset: plan chunks, run them (in-process or on local processes), publish.

Every chunk is an independent task (generate -> group by bucket -> encode in memory ->
hash -> atomic write) that returns its `ShardInfo`, so any executor can run them. Shards
are renamed into place without waiting for the disk; all of them are fsynced before the
manifest is written, last: a directory without one is an unfinished build, never a
wrong dataset.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import multiprocessing
import os
import re
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqdata.buckets import auto_boundaries, check_boundaries, optimal_boundaries
from seqdata.checks import check_int
from seqdata.errors import OutputError, SpecError
from seqdata.generate import ChunkBuffers, generate_chunk
from seqdata.progress import Progress
from seqdata.spec import LagSumSpec
from seqdata.store.atomic import fsync_path, write_bytes_atomic
from seqdata.store.formats import SUFFIXES, get_format
from seqdata.store.journal import (
    JOURNAL_NAME,
    BuildPlan,
    finish_journal,
    read_journal,
    record_shard,
    start_journal,
)
from seqdata.store.manifest import MANIFEST_NAME, Manifest, ShardInfo, read_manifest, write_manifest
from seqdata.store.memfile import MemoryFile

PR_SET_PDEATHSIG = 1
_SUFFIX = "|".join(re.escape(s) for s in SUFFIXES.values())
SHARD_PATTERN = re.compile(rf"shard-\d{{5,}}({_SUFFIX})")
TMP_PATTERN = re.compile(rf"(shard-\d{{5,}}|manifest|\.seqdata-build)\.\d+\.tmp"
                         rf"({_SUFFIX}|\.json|\.jsonl)")


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
        check_int("num_buckets", num_buckets, 1)
        return optimal_boundaries(pmf, low, num_buckets)
    return auto_boundaries(pmf, low)


@dataclass
class ShardBuffers:
    """Memory one process reuses from shard to shard: chunk arrays and the file image."""

    chunk: ChunkBuffers = field(default_factory=ChunkBuffers)
    image: MemoryFile = field(default_factory=MemoryFile)


_worker_buffers: ShardBuffers | None = None  # set in each pool worker by _init_worker


def build_shard(spec: LagSumSpec, chunk: int, fmt: str, boundaries: tuple[int, ...],
                out: str, buffers: ShardBuffers | None = None) -> tuple[ShardInfo, np.ndarray]:
    """Generate, encode and publish one shard; returns its info and length counts.

    The shard is renamed into place without waiting for the disk: see `sync_shards`.
    """
    buffers = buffers or _worker_buffers or ShardBuffers()
    seqs = generate_chunk(spec, chunk, buffers.chunk)
    lengths = seqs.lengths  # sorted ascending, so each bucket is one run
    cuts = np.searchsorted(lengths, boundaries, side="right")
    starts = np.concatenate(([0], cuts[:-1]))
    runs = [(b, int(a), int(e)) for b, (a, e) in enumerate(zip(starts, cuts, strict=True))
            if e > a]
    name = shard_name(chunk, fmt)
    image = buffers.image
    image.reset(capacity=sum(a.nbytes for a in (seqs.x, seqs.y, seqs.offsets, seqs.ids))
                + (1 << 20))
    get_format(fmt).encode(image, seqs, runs, chunk)
    data = image.getbuffer()
    digest = hashlib.sha256(data).hexdigest()
    write_bytes_atomic(Path(out) / name, data, durable=False)
    steps = seqs.offsets[cuts] - seqs.offsets[starts]
    info = ShardInfo(name, chunk, tuple((cuts - starts).tolist()), tuple(steps.tolist()),
                     len(data), digest)
    span = spec.lengths.high - spec.lengths.low + 1
    return info, np.bincount(lengths - spec.lengths.low, minlength=span)


def sync_shards(out: Path, shards: Sequence[ShardInfo]) -> None:
    """Make published shards and their names durable (before the manifest names them)."""
    try:
        for info in shards:
            fsync_path(out / info.path)
        fsync_path(out)
    except OSError as e:
        raise OutputError(f"cannot sync {e.filename or out}: {e.strerror or e}") from e


def is_build_file(name: str) -> bool:
    """Whether ``name`` is something a seqdata build writes in its directory."""
    return (name in (MANIFEST_NAME, JOURNAL_NAME) or SHARD_PATTERN.fullmatch(name) is not None
            or TMP_PATTERN.fullmatch(name) is not None)


def remove_temporary_files(out: Path) -> None:
    for path in out.iterdir():
        if TMP_PATTERN.fullmatch(path.name):
            path.unlink(missing_ok=True)


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
                          f"pass overwrite=True to replace the dataset in it")
    foreign = [e for e in entries if not is_build_file(e)]
    if foreign:
        raise OutputError(f"output directory {out} holds files that are not part of a seqdata "
                          f"dataset ({', '.join(foreign[:3])}); refusing to overwrite it")
    # Manifest first: from here on the directory reads as an unfinished build.
    for name in sorted(entries, key=lambda e: e != MANIFEST_NAME):
        try:
            (out / name).unlink()
        except OSError as e:
            raise OutputError(f"cannot remove {out / name}: {e.strerror or e}") from None


def _init_worker() -> None:
    """Pool worker initializer: buffers to reuse, and on Linux, SIGKILL when the parent
    dies (no orphan writers)."""
    global _worker_buffers
    _worker_buffers = ShardBuffers()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _run_chunks(plan: BuildPlan, chunks: list[int], out: Path,
                workers: int) -> Iterator[tuple[ShardInfo, np.ndarray]]:
    spec, fmt, boundaries = plan.spec, plan.format, plan.boundaries
    if workers == 1:
        buffers = ShardBuffers()
        for c in chunks:
            yield build_shard(spec, c, fmt, boundaries, str(out), buffers)
        return
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_init_worker) as pool:
        futures = [pool.submit(build_shard, spec, c, fmt, boundaries, str(out)) for c in chunks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool:
            for future in futures:
                future.cancel()
            raise OutputError(
                f"a generation worker for {out} died (killed, out of memory, or a calling "
                f"script without an `if __name__ == '__main__':` guard); run again with "
                f"resume=True to finish the build") from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def build_dataset(out: Path | str, spec: LagSumSpec, fmt: str = "hdf5",
                  boundaries: Sequence[int] | None = None, num_buckets: int | None = None,
                  workers: int = 1, overwrite: bool = False, progress: bool = True,
                  resume: bool = False) -> Manifest:
    """Generate ``spec`` into directory ``out`` as ``fmt`` shards plus a manifest.

    With ``resume``, an interrupted build of the same plan is finished: shards it
    published that still hash right are kept, the rest are built again. The result is
    byte-identical to an uninterrupted build.

    >>> import tempfile
    >>> m = build_dataset(tempfile.mkdtemp(), LagSumSpec(num_sequences=50), progress=False)
    >>> m.num_sequences, m.format
    (50, 'hdf5')
    """
    get_format(fmt)
    check_int("workers", workers, 1)
    if resume and overwrite:
        raise SpecError("give either resume=True or overwrite=True, not both")
    plan = BuildPlan(spec, fmt, resolve_boundaries(spec, boundaries, num_buckets))
    out = Path(out)
    done = _resume(out, plan) if resume and _has_build(out) else {}
    if isinstance(done, Manifest):
        return done
    if not done:
        prepare_output(out, overwrite or resume)
        start_journal(out, plan)
    todo = [c for c in range(spec.num_chunks) if c not in done]
    bar = Progress(spec.num_chunks, f"generate {out.name}", enabled=progress)
    for info, _ in done.values():
        bar.advance(info.num_sequences, info.num_timesteps)
    results = dict(done)
    for info, length_counts in _run_chunks(plan, todo, out, min(workers, max(len(todo), 1))):
        record_shard(out, info, length_counts)
        results[info.chunk] = (info, length_counts)
        bar.advance(info.num_sequences, info.num_timesteps)
    counts = np.sum([c for _, c in results.values()], axis=0)
    manifest = Manifest(spec, fmt, plan.boundaries,
                        tuple(results[c][0] for c in range(spec.num_chunks)),
                        tuple(int(c) for c in counts))
    sync_shards(out, manifest.shards)
    write_manifest(out, manifest)
    finish_journal(out)
    return manifest


def _has_build(out: Path) -> bool:
    return (out / JOURNAL_NAME).exists() or (out / MANIFEST_NAME).exists()


def _resume(out: Path, plan: BuildPlan) -> dict[int, tuple[ShardInfo, np.ndarray]] | Manifest:
    """What an interrupted build left that can be kept, or the manifest if it finished."""
    if not (out / JOURNAL_NAME).exists():
        manifest = read_manifest(out)
        if (manifest.spec, manifest.format, manifest.boundaries) != \
                (plan.spec, plan.format, plan.boundaries):
            raise OutputError(f"{out} holds a finished dataset of another spec, format or "
                              f"boundaries; pass overwrite=True to replace it")
        return manifest
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # killed between manifest and journal end
    remove_temporary_files(out)
    done = read_journal(out, plan)
    return {c: v for c, v in done.items()
            if c < plan.spec.num_chunks and v[0].path == shard_name(c, plan.format)}
