"""`open_dataset`: a validated dataset directory and access to its sequences.

The manifest is read and checked before any shard is opened; shards are then read one
bucket at a time (a contiguous group or row group), so a reader never pays for buckets
it does not use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from seqdata.checks import check_int
from seqdata.errors import ShardError
from seqdata.read.batch import Batch, BatchArena, BatchMemory
from seqdata.read.batching import (
    Planned,
    ShardLoader,
    WindowReader,
    check_budget,
    plan_batches,
    shard_order,
)
from seqdata.read.config import BatchConfig, as_config
from seqdata.read.located import Locator
from seqdata.sequences import Sequences
from seqdata.spec import LagSumSpec
from seqdata.store.buffers import ReadBuffers
from seqdata.store.formats import get_format
from seqdata.store.manifest import Manifest, ShardInfo, read_manifest
from seqdata.store.remote import FETCH_AHEAD, RemoteShards, is_url, open_remote
from seqdata.store.shards import read_shard, read_spans

# Rows whose lengths and ids a share's planner keeps at least (`Locator`; about 40 MB).
LOCATED_ROWS = 1 << 20


class Dataset:
    """A dataset directory: its manifest plus readers for its shards.

    >>> import tempfile
    >>> from seqdata.store.build import build_dataset
    >>> d = tempfile.mkdtemp()
    >>> _ = build_dataset(d, LagSumSpec(num_sequences=20, seed=3), progress=False)
    >>> ds = open_dataset(d)
    >>> ds.num_sequences, len(ds.read_all())
    (20, 20)
    """

    def __init__(self, root: Path, manifest: Manifest, check_hashes: bool = True,
                 remote: RemoteShards | None = None) -> None:
        self.root = root
        self.manifest = manifest
        self.check_hashes = check_hashes
        # A dataset at a URL: its shards, fetched into ``root`` (a cache) when first read.
        self.remote = remote
        # shard -> its file's key when its bytes and content were last checked
        self._checked: dict[int, tuple[int, int, int, int]] = {}
        # A reader whose epoch ended, kept for the next epoch with its buffers (fresh
        # memory costs a page fault per page, as much as reading into it).
        self._idle: list[WindowReader] = []
        # The same for a loader worker's share: its shards' lengths and ids, read once
        # (a shard replaced since is caught by its next read's check, as in any epoch).
        self._idle_locator: list[Locator] = []

    def __getstate__(self) -> dict[str, Any]:
        # buffers, threads and what a share read stay in this process
        return {**self.__dict__, "_idle": [], "_idle_locator": []}

    def __repr__(self) -> str:
        return (f"Dataset({self.location!r}, format={self.format!r}, "
                f"sequences={self.num_sequences}, buckets={len(self.boundaries)})")

    @property
    def location(self) -> str:
        """Where the dataset is: its URL, or its directory."""
        return str(self.root) if self.remote is None else self.remote.url

    @property
    def spec(self) -> LagSumSpec:
        return self.manifest.spec

    @property
    def format(self) -> str:
        return self.manifest.format

    @property
    def boundaries(self) -> tuple[int, ...]:
        return self.manifest.boundaries

    @property
    def shards(self) -> tuple[ShardInfo, ...]:
        return self.manifest.shards

    @property
    def num_sequences(self) -> int:
        return self.manifest.num_sequences

    @property
    def num_timesteps(self) -> int:
        return self.manifest.num_timesteps

    @property
    def bucket_sequences(self) -> np.ndarray:
        return self.manifest.bucket_sequences

    @property
    def bucket_timesteps(self) -> np.ndarray:
        return self.manifest.bucket_timesteps

    @property
    def checksum(self) -> str:
        """The manifest's checksum: it names this exact dataset (spec, shards, hashes)."""
        return self.manifest.checksum

    @property
    def num_features(self) -> int:
        return self.spec.num_features

    def shard_path(self, shard: ShardInfo) -> Path:
        return self.root / shard.path

    def read_shard(self, index: int, buckets: list[int] | None = None,
                   values: bool = True, buffers: ReadBuffers | None = None) -> list[Sequences]:
        """Buckets ``buckets`` (default: all) of shard ``index``, one `Sequences` each.

        With ``values=False`` only ids and lengths are read (``x`` has no columns and
        ``y`` holds no data), which is what planning an epoch needs. With ``buffers``, the
        result may be views of one of them: valid until it is recycled.

        The first read of a shard reads its file with one call, checks its hash on those
        same bytes and checks its content (`seqdata.store.shards.content_problems`).
        Every later read compares the file's inode, size and modification time with
        those it had then, and checks it all again if they changed: a shard replaced
        while a `Dataset` is open is a ShardError naming it, never new data.
        """
        whole = values and buckets is None
        parts = self._recheck(index, buffers if whole else None)
        if parts is not None and whole:
            return parts
        return read_shard(self.root, self.manifest, index, buckets, values=values,
                          buffers=buffers)

    def read_spans(self, index: int, spans: np.ndarray, x_out: np.ndarray,
                   y_out: np.ndarray) -> bool:
        """Copy runs of timesteps of shard ``index`` straight from its file into ``x_out``
        / ``y_out``: run i is timesteps ``spans[i, 1]:spans[i, 2]`` of bucket ``spans[i,
        0]``, written from row ``spans[i, 3]``. False, having read nothing, if the file
        reads whole buckets only (a shard rewritten by another tool: HDF5 chunked,
        Parquet of another page layout). The shard is checked as `read_shard` does.
        Raises ValueError if a run does not fit the outputs."""
        rows, steps = spans[:, 3], spans[:, 2] - spans[:, 1]
        if ((rows < 0) | (rows + steps > min(len(x_out), len(y_out)))).any():
            raise ValueError(f"runs of timesteps past the outputs' {min(len(x_out), len(y_out))} "
                             f"rows asked for")
        self._recheck(index)
        return read_spans(self.root, self.manifest, index, spans, x_out, y_out)

    def _recheck(self, index: int, buffers: ReadBuffers | None = None,
                 force: bool = False) -> list[Sequences] | None:
        """Check shard ``index`` (bytes and content) if it was not checked since its file
        last changed (``force``: in any case); the buckets that check read, or None if
        none was needed. Every read of a shard starts here: a remote one is fetched."""
        if self.remote is not None:
            self.remote.fetch(index)
        if not (self.check_hashes or force):
            return None
        key = self._file_key(index)
        if not force and self._checked.get(index) == key:
            return None
        try:
            parts = read_shard(self.root, self.manifest, index, check_bytes=True,
                               buffers=buffers)
        except ShardError as e:
            if self.remote is None:
                raise
            raise ShardError(f"{e} (the cached copy of {self.remote.where(index)})") from None
        self._checked[index] = key
        return parts

    def check_hash(self, index: int) -> None:
        """Raise ShardError unless shard ``index`` has the size, SHA-256 and content the
        manifest says (what the first read of a shard checks)."""
        self._recheck(index, force=True)

    def check_unchecked(self) -> None:
        """`check_hash` every shard not checked since its file last changed: what the
        next read of each would check, done now (`seqdata.torch.loader` does it before
        its workers fork, so that they inherit the checks instead of each repeating
        them; a shard replaced later is still checked again when next read)."""
        if self.check_hashes:
            self._expect(range(len(self.shards)))
            for index in range(len(self.shards)):
                self._recheck(index)

    def _expect(self, order: Iterable[int]) -> None:
        """Shards will be read in ``order``: a remote dataset fetches them ahead."""
        if self.remote is not None:
            self.remote.expect(order)

    def _file_key(self, index: int) -> tuple[int, int, int, int]:
        """(device, inode, size, mtime) of a shard's file: changes when it is replaced."""
        path = self.shard_path(self.shards[index])
        try:
            st = path.stat()
        except OSError as e:
            raise ShardError(f"shard {path} cannot be read: {e.strerror or e}") from None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    def read_bucket(self, bucket: int) -> Sequences:
        """All sequences of one bucket, shard after shard."""
        if not 0 <= bucket < len(self.boundaries):
            raise IndexError(f"bucket must be in 0..{len(self.boundaries) - 1}, got {bucket}")
        shards = [i for i, s in enumerate(self.shards) if s.bucket_sequences[bucket]]
        self._expect(shards)
        parts = [self.read_shard(i, [bucket])[0] for i in shards]
        return Sequences.concat(parts, self.num_features)

    def read_all(self) -> Sequences:
        """Every sequence, shard after shard and bucket after bucket."""
        self._expect(range(len(self.shards)))
        return Sequences.concat([p for i in range(len(self.shards)) for p in self.read_shard(i)],
                                self.num_features)

    def batches(self, config: BatchConfig | str = "bucketed", /, *,
                select: Callable[[int], bool] | None = None,
                memory: BatchMemory | None = None, reader: WindowReader | None = None,
                then: BatchConfig | None = None, **options: Any) -> Iterator[Batch]:
        """One epoch of batches, as ``config`` (a `BatchConfig`) says.

        For convenience a mode and options work too: ``batches("padded", batch_size=8)``
        is ``batches(BatchConfig("padded", batch_size=8))``. With ``select``, only batches
        ``k`` (index in the epoch) with ``select(k)`` true are yielded (a loader worker's
        share). Where the format reads parts of buckets (both formats do), the epoch is
        then planned from lengths and ids alone and only the selected batches' rows are
        read (`seqdata.read.located`); otherwise every shard is read and only the
        selected batches are padded. Each batch is
        padded into arrays from ``memory`` (a loader's shared memory, say; default: a
        `BatchArena`, which reuses the memory of batches no longer held). A
        `WindowReader` passed as ``reader`` reads the windows (a stream of epochs passes
        one), and with ``then``, the config of the epoch it asks for next, reads that
        epoch's first window while this epoch's last is batched.
        Without one, the dataset's own reader is used, and kept with its buffers for the
        next epoch: its memory is then paid for once, not every epoch. A share keeps the
        lengths and ids it read the same way (planning a later epoch then reads none).
        """
        cfg = as_config(config, **options)
        memory = BatchArena() if memory is None else memory
        if select is None or not get_format(self.format).reads_spans:
            own = reader
            if own is None:
                try:
                    own, then = self._idle.pop(), None
                except IndexError:
                    own, then = WindowReader(), None
            try:
                planned = self._plan(cfg, lambda i, buffers: self.read_shard(i, buffers=buffers),
                                     own, then)
                for k, batch in enumerate(planned):
                    if k >= cfg.start and (select is None or select(k)):
                        yield batch.pad(memory)
            finally:
                if reader is None:
                    own.close()
                    self._idle[:] = [own]
            return
        # A share: plan over locations, read only the selected batches' rows.
        largest = max((s.num_sequences for s in self.shards), default=0)
        keep = max(LOCATED_ROWS, 4 * cfg.window_shards * largest), 2 * cfg.window_shards
        try:
            locator = self._idle_locator.pop()
        except IndexError:
            locator = None
        if locator is None or locator.keeps != keep:
            locator = Locator(lambda i: self.read_shard(i, values=False), self.read_spans,
                              self.read_shard, self.num_features, keep_rows=keep[0],
                              keep_values=keep[1])
        try:
            for k, batch in enumerate(self._plan(replace(cfg, read_ahead=False),
                                                 locator.load)):
                if k >= cfg.start and select(k):
                    yield locator.pad(batch, memory)
        finally:
            self._idle_locator[:] = [locator]

    def plan(self, config: BatchConfig | str = "bucketed", /,
             **options: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ids, lengths) of every batch of the epoch, reading only lengths and ids: the
        ``ids`` and ``lengths`` of what :meth:`batches` yields, fill rows (id -1, length
        0, with ``static_shapes``) included."""
        cfg = replace(as_config(config, **options), read_ahead=False)
        planned = self._plan(cfg, lambda i, _: self.read_shard(i, values=False))
        return [(batch.ids, batch.lengths) for batch in planned]

    def num_batches(self, config: BatchConfig | str = "bucketed", /, **options: Any) -> int:
        """How many batches :meth:`batches` with the same config yields."""
        return len(self.plan(config, **options))

    def _plan(self, cfg: BatchConfig, load: ShardLoader, reader: WindowReader | None = None,
              then: BatchConfig | None = None) -> Iterator[Planned]:
        """The epoch's batches, planned (`plan_batches`): this rank's share of each (all
        of it on one)."""
        check_budget(cfg, self.boundaries, self.spec.lengths.high)
        if self.remote is not None:  # no per-epoch work for a local dataset
            self.remote.expect(shard_order(len(self.shards), cfg))
        planned = plan_batches(len(self.shards), load, cfg, self.boundaries, reader, then)
        if cfg.num_ranks == 1:
            return planned
        return (batch.share(cfg.rank, cfg.num_ranks) for batch in planned)


def open_dataset(path: Path | str, check_hashes: bool = True, *,
                 cache: Path | str | None = None, fetch_ahead: int = FETCH_AHEAD) -> Dataset:
    """Open a dataset directory after validating its manifest and finding its shards.

    Raises ManifestError for a bad manifest and ShardError for a missing shard. With
    ``check_hashes`` (the default) each shard's SHA-256 is checked the first time it is
    read; turning it off trusts the files as they are.

    ``path`` may be an fsspec URL (``s3://bucket/ds``, ``file:///data/ds``): its manifest
    is fetched into the cache directory (``cache``, else ``$SEQDATA_CACHE``, else
    ``~/.cache/seqdata``), and each shard when it is first read, checked against the
    manifest, with ``fetch_ahead`` fetches running ahead of the reader
    (`seqdata.store.remote`).
    """
    if is_url(path):
        check_int("fetch_ahead", fetch_ahead, 1)
        remote = open_remote(str(path), cache, fetch_ahead)
        return Dataset(remote.local, remote.manifest, check_hashes, remote)
    root = Path(path)
    manifest = read_manifest(root)
    for info in manifest.shards:
        shard = root / info.path
        if not shard.is_file():
            raise ShardError(f"shard {shard} listed in the manifest is missing")
    return Dataset(root, manifest, check_hashes)
