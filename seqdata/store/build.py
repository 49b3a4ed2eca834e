"""Build a dataset: plan chunks, run them (in-process or on local processes), publish.

Every chunk is an independent task (generate -> group by bucket -> encode in memory ->
hash -> atomic write) that returns its `ShardInfo`, so any executor can run them. Shards
are renamed into place without waiting for the disk; all of them are fsynced before the
card and then the manifest are written, last: a directory without one is an unfinished
build, never a wrong dataset. A build holds its directory's lock (`seqdata.store.lock`)
from start to end, shared with its pool workers, which end when the build's process does.

Layout (manifest_version 2): shards in ``DIR/data/`` and nothing else there, ever: their
temporary files are written in ``DIR`` and renamed into ``data/``; the journal, the lock,
the card and the manifest live in ``DIR``. `seqdata.store.convert` writes through the same
code (`write_shard`, `build_from`), with chunks read from another dataset.
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqdata.buckets import auto_boundaries, check_boundaries, optimal_boundaries
from seqdata.checks import check_int
from seqdata.errors import OutputError, SpecError
from seqdata.generate import ChunkBuffers, generate_chunk
from seqdata.progress import Progress, format_bytes
from seqdata.sequences import Sequences
from seqdata.spec import LagSumSpec
from seqdata.store.atomic import fsync_path, write_bytes_atomic
from seqdata.store.card import (
    CARD_MARK,
    CARD_NAME,
    MAX_CARD_BYTES,
    card_is_current,
    is_card,
    write_card,
)
from seqdata.store.cluster import check_reachable, check_scheduler, run_chunks
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
from seqdata.store.manifest import (
    DATA_DIR,
    MANIFEST_NAME,
    Manifest,
    ShardInfo,
    read_manifest,
    write_manifest,
)
from seqdata.store.memfile import MemoryFile
from seqdata.store.remote import Remote, is_url, open_remote, publish, staging_dir

PR_SET_PDEATHSIG = 1
_SUFFIX = "|".join(re.escape(s) for s in SUFFIXES.values())
SHARD_PATTERN = re.compile(rf"shard-\d{{5,}}({_SUFFIX})")
TMP_PATTERN = re.compile(rf"(shard-\d{{5,}}|manifest|README|\.seqdata-build)\.\d+\.tmp"
                         rf"({_SUFFIX}|\.json|\.jsonl|\.md)")
# Chunk -> its sequences sorted by length (ties by id): what a shard is written from.
ChunkSource = Callable[[int, "ShardBuffers"], Sequences]


def shard_name(chunk: int, fmt: str) -> str:
    """The file name of chunk ``chunk``'s shard."""
    return f"shard-{chunk:05d}{SUFFIXES[fmt]}"


def shard_path(chunk: int, fmt: str) -> str:
    """Chunk ``chunk``'s shard, relative to the dataset directory (as the manifest lists it)."""
    return f"{DATA_DIR}/{shard_name(chunk, fmt)}"


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
    return write_shard(Path(out), spec, chunk, fmt, boundaries, seqs, buffers.image)


_task_buffers = threading.local()  # a Dask worker thread's buffers (`build_shard_task`)


def build_shard_task(spec: LagSumSpec, chunk: int, fmt: str, boundaries: tuple[int, ...],
                     out: str) -> tuple[ShardInfo, np.ndarray]:
    """`build_shard` as a Dask task: each worker thread reuses buffers of its own."""
    if not hasattr(_task_buffers, "value"):
        _task_buffers.value = ShardBuffers()
    return build_shard(spec, chunk, fmt, boundaries, out, _task_buffers.value)


def write_shard(out: Path, spec: LagSumSpec, chunk: int, fmt: str,
                boundaries: tuple[int, ...], seqs: Sequences,
                image: MemoryFile) -> tuple[ShardInfo, np.ndarray]:
    """Encode chunk ``chunk``'s sequences ``seqs`` (sorted by length, ties by id) into
    ``image`` and publish them as ``out/data/shard-NNNNN``; its info and length counts.

    The temporary file is written in ``out``, never in ``out/data``; the shard is renamed
    into place without waiting for the disk: see `sync_shards`.
    """
    lengths = seqs.lengths  # sorted ascending, so each bucket is one run
    cuts = np.searchsorted(lengths, boundaries, side="right")
    starts = np.concatenate(([0], cuts[:-1]))
    runs = [(b, int(a), int(e)) for b, (a, e) in enumerate(zip(starts, cuts, strict=True))
            if e > a]
    path = shard_path(chunk, fmt)
    image.reset(capacity=sum(a.nbytes for a in (seqs.x, seqs.y, seqs.offsets, seqs.ids))
                + (1 << 20))
    get_format(fmt).encode(image, seqs, runs, chunk)
    data = image.getbuffer()
    digest = hashlib.sha256(data).hexdigest()
    write_bytes_atomic(out / path, data, durable=False, tmp_dir=out)
    steps = seqs.offsets[cuts] - seqs.offsets[starts]
    info = ShardInfo(path, chunk, tuple((cuts - starts).tolist()), tuple(steps.tolist()),
                     len(data), digest)
    span = spec.lengths.high - spec.lengths.low + 1
    return info, np.bincount(lengths - spec.lengths.low, minlength=span)


def sync_shards(out: Path, shards: Sequence[ShardInfo]) -> None:
    """Make published shards and their names durable (before the manifest names them)."""
    try:
        for info in shards:
            fsync_path(out / info.path)
        fsync_path(out / DATA_DIR)
        fsync_path(out)
    except OSError as e:
        raise OutputError(f"cannot sync {e.filename or out}: {e.strerror or e}") from e


def is_build_file(name: str) -> bool:
    """Whether ``name`` is something a seqdata build writes in its directory (shards
    beside the manifest: a version 1 dataset's)."""
    return (name in (MANIFEST_NAME, JOURNAL_NAME, LOCK_NAME, CARD_NAME, DATA_DIR)
            or SHARD_PATTERN.fullmatch(name) is not None
            or TMP_PATTERN.fullmatch(name) is not None)


def remove_temporary_files(out: Path) -> None:
    for path in out.iterdir():
        if TMP_PATTERN.fullmatch(path.name):
            path.unlink(missing_ok=True)


def data_entries(out: Path) -> list[str]:
    """The names in ``out/data`` (none if it is not there); refuses a ``data`` that is a
    symbolic link or not a directory (a build never follows it out of ``out``)."""
    data = out / DATA_DIR
    if data.is_symlink():
        raise OutputError(f"{data} is a symbolic link, expected the directory of a seqdata "
                          f"dataset's shards; refusing to write through it")
    if not data.exists():
        return []
    if not data.is_dir():
        raise OutputError(f"{data} is not a directory, expected the directory of a seqdata "
                          f"dataset's shards")
    try:
        return sorted(p.name for p in data.iterdir())
    except OSError as e:
        raise OutputError(f"cannot list {data}: {e.strerror or e}") from None


def make_data_dir(out: Path) -> None:
    """Create ``out/data`` if it is not there (refusing a link or a file in its place)."""
    data_entries(out)
    try:
        (out / DATA_DIR).mkdir(exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out / DATA_DIR}: {e.strerror or e}") from None


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


def foreign_entries(out: Path, entries: Sequence[str]) -> list[str]:
    """The ``entries`` of ``out`` that no seqdata build writes: other names, a README.md
    that is not a seqdata card, anything in ``data/`` but shards (a ``data`` that is a
    link or a file is refused: OutputError)."""
    foreign = [e for e in entries if not is_build_file(e)
               or (e == CARD_NAME and not is_card(out / e))]
    if DATA_DIR in entries:
        foreign += [f"{DATA_DIR}/{e}" for e in data_entries(out)
                    if not SHARD_PATTERN.fullmatch(e)]
    return foreign


def check_replaceable(out: Path | str, entries: Sequence[str], overwrite: bool,
                      foreign: Sequence[str] | None = None) -> None:
    """Refuse a non-empty ``out`` unless overwriting, and anything but a seqdata dataset
    (``foreign``: the entries no build writes, found here if not given)."""
    if not entries:
        return
    if not overwrite:
        raise OutputError(f"output directory {out} is not empty ({len(entries)} entries); "
                          f"pass overwrite=True to replace the dataset in it")
    foreign = foreign_entries(Path(out), entries) if foreign is None else foreign
    if foreign:
        raise OutputError(f"output directory {out} holds files that are not part of a seqdata "
                          f"dataset ({', '.join(foreign[:3])}); refusing to overwrite it")


def prepare_output(out: Path, overwrite: bool) -> None:
    """Make ``out`` an empty directory, refusing to replace anything but a seqdata dataset.

    The build lock, if there, stays: the build that calls this holds it.
    """
    entries = output_entries(out)
    check_replaceable(out, entries, overwrite)
    remove_build_files(out, entries)


def remove_build_files(out: Path, entries: Sequence[str]) -> None:
    """Remove ``entries`` of ``out`` (build files, checked by the caller), ``data/`` with
    the shards in it; the manifest first: from then on the directory reads as an
    unfinished build."""
    for name in sorted(entries, key=lambda e: e != MANIFEST_NAME):
        path = out / name
        try:
            if name == DATA_DIR and not path.is_symlink() and path.is_dir():
                for shard in data_entries(out):
                    if SHARD_PATTERN.fullmatch(shard):
                        (path / shard).unlink()
                path.rmdir()  # fails, naming it, if anything else is in it
            else:
                path.unlink()
        except OSError as e:
            raise OutputError(f"cannot remove {e.filename or path}: {e.strerror or e}") \
                from None


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
                lock: Path | None, source: ChunkSource | None = None,
                scheduler: str | None = None) -> Iterator[tuple[ShardInfo, np.ndarray]]:
    spec, fmt, boundaries = plan.spec, plan.format, plan.boundaries
    if scheduler is not None:
        yield from run_chunks(scheduler, build_shard_task, spec, chunks, fmt, boundaries, out)
        return
    if source is not None:  # in this process: the source may hold open files
        buffers = ShardBuffers()
        for c in chunks:
            yield write_shard(out, spec, c, fmt, boundaries, source(c, buffers), buffers.image)
        return
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
                  resume: bool = False, scheduler: str | None = None) -> Manifest:
    """Generate ``spec`` into directory ``out`` as ``fmt`` shards plus a manifest.

    Chunks run in this process, on ``workers`` local processes, or on a Dask cluster:
    ``scheduler`` is its address, or ``"local:N"`` for N local Dask workers
    (`seqdata.store.cluster`); the files are the same bytes whichever runs them.

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
    if scheduler is not None:
        check_scheduler(scheduler)
        if workers != 1:
            raise SpecError("give either workers (local processes) or scheduler (a Dask "
                            "cluster), not both")
    plan = BuildPlan(spec, fmt, resolve_boundaries(spec, boundaries, num_buckets))
    if scheduler is not None:
        check_reachable(scheduler)
    return build_from(out, plan, workers=workers, overwrite=overwrite, resume=resume,
                      progress=progress, scheduler=scheduler)


def build_from(out: Path | str, plan: BuildPlan, *, workers: int = 1, overwrite: bool = False,
               resume: bool = False, progress: bool = True, source: ChunkSource | None = None,
               label: str = "generate", discard_on_error: bool = False,
               scheduler: str | None = None,
               upload: Callable[[Path, Manifest], None] | None = None) -> Manifest:
    """Build ``plan`` into ``out``: each chunk generated, or read from ``source`` (in this
    process), then published as a shard; the card and the manifest last.

    The one path by which shards, cards and manifests are written (`build_dataset`,
    `seqdata.store.convert`). Raises OutputError, changing nothing, for an output that is
    not empty (without ``overwrite``) or holds anything but a seqdata dataset, and while
    another build of ``out`` runs. With ``discard_on_error``, a build that fails once it
    holds the lock removes what it wrote (instead of leaving it to resume). ``upload``
    is called with the finished build while it still holds the lock. An fsspec URL
    ``out`` is built in a local staging directory and then uploaded (`_build_remote`).
    """
    if is_url(out):
        return _build_remote(Remote(str(out)), plan, workers=workers, overwrite=overwrite,
                             resume=resume, progress=progress, source=source, label=label,
                             discard_on_error=discard_on_error, scheduler=scheduler)
    out = Path(out)
    check_disk_space(out, plan.spec)
    entries = output_entries(out)
    if foreign_entries(out, entries) and not (resume and _has_build(out)):
        check_replaceable(out, entries, overwrite or resume)  # refuses, making no lock file
    with build_lock(out) as lock:
        try:
            manifest = _build(out, plan, workers, overwrite, resume, progress, lock, source,
                              label, scheduler)
            if upload is not None:
                upload(out, manifest)
            return manifest
        except BaseException:
            if discard_on_error:
                with contextlib.suppress(OSError, OutputError):
                    remove_temporary_files(out)
                    remove_build_files(out, [e for e in output_entries(out)
                                             if e != LOCK_NAME and is_build_file(e)])
            raise


def _build(out: Path, plan: BuildPlan, workers: int, overwrite: bool, resume: bool,
           progress: bool, lock: Path | None, source: ChunkSource | None = None,
           label: str = "generate", scheduler: str | None = None) -> Manifest:
    """`build_from` once the directory is locked."""
    spec, fmt = plan.spec, plan.format
    done = _resume(out, plan) if resume and _has_build(out) else {}
    if isinstance(done, Manifest):
        return done
    if not done:
        prepare_output(out, overwrite or resume)
        start_journal(out, plan)
    make_data_dir(out)
    todo = [c for c in range(spec.num_chunks) if c not in done]
    bar = Progress(spec.num_chunks, f"{label} {out.name}", enabled=progress)
    for info, _ in done.values():
        bar.advance(info.num_sequences, info.num_timesteps)
    results = dict(done)
    for info, length_counts in _run_chunks(plan, todo, out, min(workers, max(len(todo), 1)),
                                           lock, source, scheduler):
        record_shard(out, info, length_counts)
        results[info.chunk] = (info, length_counts)
        bar.advance(info.num_sequences, info.num_timesteps)
    # A Dask worker that died while writing a shard left its temporary file (its chunk
    # was built again elsewhere): nothing is still writing one now.
    remove_temporary_files(out)
    counts = np.sum([c for _, c in results.values()], axis=0)
    manifest = Manifest(spec, fmt, plan.boundaries,
                        tuple(results[c][0] for c in range(spec.num_chunks)),
                        tuple(int(c) for c in counts))
    sync_shards(out, manifest.shards)
    write_card(out, manifest)
    write_manifest(out, manifest)
    finish_journal(out)
    return manifest


def _build_remote(remote: Remote, plan: BuildPlan, *, overwrite: bool, resume: bool,
                  **options: Any) -> Manifest:
    """`build_from` for a URL: the output checked as a directory is, the dataset built in
    the URL's staging directory (resumable there), then uploaded, the manifest last
    (`seqdata.store.remote.publish`); the staging directory is removed once it is."""
    finished = _check_remote_output(remote, plan, overwrite, resume)
    if finished is not None:
        return finished
    staging = staging_dir(remote.url)
    manifest = build_from(staging, plan, overwrite=not resume, resume=resume,
                          upload=lambda out, m: publish(remote, out, m), **options)
    shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _check_remote_output(remote: Remote, plan: BuildPlan, overwrite: bool,
                         resume: bool) -> Manifest | None:
    """Refuse a URL as `build_from` refuses a directory; with ``resume``, the dataset
    there if it is finished (of the same plan), else None."""
    try:
        files = remote.files()
        card = remote.read(CARD_NAME, MAX_CARD_BYTES) if CARD_NAME in files else b""
    except OSError as e:
        raise OutputError(f"cannot list {remote.url}: {e}") from None
    if not (overwrite or resume) and files and MANIFEST_NAME not in files:
        raise OutputError(f"output {remote.url} holds an unfinished dataset (no manifest); "
                          f"pass resume=True to finish it or overwrite=True to replace it")
    foreign = [f for f in files if not (
        (f.startswith(f"{DATA_DIR}/") and SHARD_PATTERN.fullmatch(f[len(DATA_DIR) + 1:]))
        or ("/" not in f and is_build_file(f) and (f != CARD_NAME
                                                   or CARD_MARK.encode() in card)))]
    check_replaceable(remote.url, sorted({f.split("/")[0] for f in files}),
                      overwrite or resume, foreign)
    if resume and MANIFEST_NAME in files:
        return check_same_plan(remote.url, open_remote(remote.url).manifest, plan)
    return None


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
        present = 0
        if out.is_dir():
            data = out / DATA_DIR
            files = [p for p in out.iterdir() if is_build_file(p.name)]
            if not data.is_symlink() and data.is_dir():
                files += [p for p in data.iterdir() if SHARD_PATTERN.fullmatch(p.name)]
            present = sum(p.stat().st_size for p in files
                          if not p.is_symlink() and p.is_file())
    except OSError as e:
        raise OutputError(f"cannot check the free space for {out}: {e.strerror or e}") from None
    need = spec.expected_bytes - present
    if need > free:
        raise OutputError(f"{spec.num_sequences:,} sequences need about {format_bytes(need)} "
                          f"in {out}, and only {format_bytes(free)} are free there; free some "
                          f"space or generate fewer sequences")


def _has_build(out: Path) -> bool:
    return (out / JOURNAL_NAME).exists() or (out / MANIFEST_NAME).exists()


def check_same_plan(out: Path | str, manifest: Manifest, plan: BuildPlan) -> Manifest:
    """``manifest``, the finished dataset at ``out``, if it is of ``plan``."""
    if (manifest.spec, manifest.format, manifest.boundaries) != \
            (plan.spec, plan.format, plan.boundaries):
        raise OutputError(f"{out} holds a finished dataset of another spec, format or "
                          f"boundaries; pass overwrite=True to replace it")
    return manifest


def _resume(out: Path, plan: BuildPlan) -> dict[int, tuple[ShardInfo, np.ndarray]] | Manifest:
    """What an interrupted build left that can be kept, or the manifest if it finished."""
    if not (out / JOURNAL_NAME).exists():
        manifest = check_same_plan(out, read_manifest(out), plan)
        if manifest.version < 2:
            raise OutputError(f"{out} holds a finished dataset of the old layout "
                              f"(manifest_version {manifest.version}, shards beside the "
                              f"manifest); `seqdata convert {out} NEW` writes it in the "
                              f"current layout")
        card = out / CARD_NAME
        if not card.exists() or (is_card(card) and not card_is_current(out, manifest)):
            write_card(out, manifest)  # a card removed or edited is written again
        return manifest
    data_entries(out)  # refuses a link or a file in place of data/, before reading in it
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # killed between manifest and journal end
    remove_temporary_files(out)
    done = read_journal(out, plan)
    # A journal of the old layout lists shards beside it: none is kept, all are rebuilt.
    return {c: v for c, v in done.items()
            if c < plan.spec.num_chunks and v[0].path == shard_path(c, plan.format)}
