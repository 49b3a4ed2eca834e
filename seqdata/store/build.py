"""Build a dataset: plan chunks, run them (in-process or on local processes), publish.

Every chunk is an independent task (generate -> group by bucket -> encode in memory ->
hash -> atomic write) that returns its `ShardInfo`, so any executor can run them. Shards
are renamed into place without waiting for the disk; all of them are fsynced before the
manifest is written, last: a directory without one is an unfinished build, never a
wrong dataset. A build holds its directory's lock (`seqdata.store.lock`) from start to
end, shared with its pool workers, which end when the build's process does.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import threading
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
from seqdata.store.lock import LOCK_NAME, build_lock, share
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
_worker_lock: int | None = None  # a pool worker's fd of the build lock, open until it ends


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
    return (name in (MANIFEST_NAME, JOURNAL_NAME, LOCK_NAME)
            or SHARD_PATTERN.fullmatch(name) is not None
            or TMP_PATTERN.fullmatch(name) is not None)


def remove_temporary_files(out: Path) -> None:
    for path in out.iterdir():
        if TMP_PATTERN.fullmatch(path.name):
            path.unlink(missing_ok=True)


def output_entries(out: Path) -> list[str]:
    """Make ``out`` a writable directory; the names in it, its build lock aside."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {out} is not writable")
    return sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)


def check_replaceable(out: Path, entries: Sequence[str], overwrite: bool) -> None:
    """Refuse a non-empty ``out`` unless overwriting, and anything but a seqdata dataset."""
    if not entries:
        return
    if not overwrite:
        raise OutputError(f"output directory {out} is not empty ({len(entries)} entries); "
                          f"pass overwrite=True to replace the dataset in it")
    foreign = [e for e in entries if not is_build_file(e)]
    if foreign:
        raise OutputError(f"output directory {out} holds files that are not part of a seqdata "
                          f"dataset ({', '.join(foreign[:3])}); refusing to overwrite it")


def prepare_output(out: Path, overwrite: bool) -> None:
    """Make ``out`` an empty directory, refusing to replace anything but a seqdata dataset.

    The build lock, if there, stays: the build that calls this holds it.
    """
    entries = output_entries(out)
    check_replaceable(out, entries, overwrite)
    # Manifest first: from here on the directory reads as an unfinished build.
    for name in sorted(entries, key=lambda e: e != MANIFEST_NAME):
        try:
            (out / name).unlink()
        except OSError as e:
            raise OutputError(f"cannot remove {out / name}: {e.strerror or e}") from None


def _init_worker(lock: str | None) -> None:
    """Pool worker initializer: end with the build's process (first: a worker of a build
    that has already ended takes no lock and no task), share that build's lock of the
    directory, and make the buffers to reuse."""
    global _worker_buffers, _worker_lock
    _die_with_parent()
    if lock is not None:
        _worker_lock = share(Path(lock))
    _worker_buffers = ShardBuffers()


def _die_with_parent() -> None:
    """End this pool worker, by SIGKILL, when the build's process ends.

    A worker is a child of the forkserver, not of the build's process, so
    PR_SET_PDEATHSIG (Linux) only covers the forkserver's death. The build's process
    is watched through the write end of this worker's start-up pipe, which only that
    process holds (`multiprocessing.parent_process().sentinel` reads end-of-file once
    it is closed), from a thread (safe here: nothing forks a worker). The forkserver
    then exits by itself, once its last client is gone.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if not parent.is_alive():  # it died before the watch began
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_kill_self_when_ready, args=(parent.sentinel,),
                     name="seqdata-parent-watch", daemon=True).start()


def _kill_self_when_ready(fd: int) -> None:
    multiprocessing.connection.wait([fd])
    os.kill(os.getpid(), signal.SIGKILL)


def _run_chunks(plan: BuildPlan, chunks: list[int], out: Path, workers: int,
                lock: Path | None) -> Iterator[tuple[ShardInfo, np.ndarray]]:
    spec, fmt, boundaries = plan.spec, plan.format, plan.boundaries
    if workers == 1:
        buffers = ShardBuffers()
        for c in chunks:
            yield build_shard(spec, c, fmt, boundaries, str(out), buffers)
        return
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_init_worker,
                             initargs=(None if lock is None else str(lock),)) as pool:
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
    byte-identical to an uninterrupted build. Raises OutputError, changing nothing, while
    another build of ``out`` (or a worker of a killed one) lives.

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
    check_disk_space(out, spec)
    entries = output_entries(out)
    if any(not is_build_file(e) for e in entries) and not (resume and _has_build(out)):
        check_replaceable(out, entries, overwrite or resume)  # refuses, making no lock file
    with build_lock(out) as lock:
        return _build(out, plan, workers, overwrite, resume, progress, lock)


def _build(out: Path, plan: BuildPlan, workers: int, overwrite: bool, resume: bool,
           progress: bool, lock: Path | None) -> Manifest:
    """`build_dataset` once the directory is locked."""
    spec, fmt = plan.spec, plan.format
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
    for info, length_counts in _run_chunks(plan, todo, out, min(workers, max(len(todo), 1)),
                                           lock):
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


def check_disk_space(out: Path, spec: LagSumSpec) -> None:
    """Refuse, before anything is written, a build that the disk cannot hold.

    What a build needs is estimated from the spec (`LagSumSpec.expected_bytes`, erring
    high); the dataset files already in ``out`` count as room, since a build either keeps
    them (resume) or replaces them (overwrite).
    """
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
        present = sum(p.stat().st_size for p in out.iterdir()
                      if is_build_file(p.name) and p.is_file()) if out.is_dir() else 0
    except OSError as e:
        raise OutputError(f"cannot check the free space for {out}: {e.strerror or e}") from None
    need = spec.expected_bytes - present
    if need > free:
        raise OutputError(f"{spec.num_sequences:,} sequences need about {_size(need)} in "
                          f"{out}, and only {_size(free)} are free there; free some space or "
                          f"generate fewer sequences")


def _size(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


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
