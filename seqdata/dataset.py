"""`open_dataset`: a validated dataset directory and access to its sequences.

The manifest is read and checked before any shard is opened; shards are then read one
bucket at a time (a contiguous group or row group), so a reader never pays for buckets
it does not use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seqdata.atomic import file_sha256
from seqdata.batch import Batch
from seqdata.errors import ShardError
from seqdata.formats import ShardFormat, get_format
from seqdata.manifest import Manifest, ShardInfo, read_manifest
from seqdata.readbuffers import ReadBuffers, read_file
from seqdata.sequences import Sequences
from seqdata.spec import LagSumSpec


class Dataset:
    """A dataset directory: its manifest plus readers for its shards.

    >>> import tempfile
    >>> from seqdata.build import build_dataset
    >>> d = tempfile.mkdtemp()
    >>> _ = build_dataset(d, LagSumSpec(num_sequences=20, seed=3), progress=False)
    >>> ds = open_dataset(d)
    >>> ds.num_sequences, len(ds.read_all())
    (20, 20)
    """

    def __init__(self, root: Path, manifest: Manifest, check_hashes: bool = True) -> None:
        self.root = root
        self.manifest = manifest
        self.check_hashes = check_hashes
        self._format: ShardFormat = get_format(manifest.format)
        self._hashed: set[int] = set()

    def __repr__(self) -> str:
        return (f"Dataset({str(self.root)!r}, format={self.format!r}, "
                f"sequences={self.num_sequences}, buckets={len(self.boundaries)})")

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
    def num_features(self) -> int:
        return self.spec.num_features

    def shard_path(self, shard: ShardInfo) -> Path:
        return self.root / shard.path

    def read_shard(self, index: int, buckets: list[int] | None = None,
                   values: bool = True, buffers: ReadBuffers | None = None) -> list[Sequences]:
        """Buckets ``buckets`` (default: all) of shard ``index``, one `Sequences` each.

        With ``values=False`` only ids and lengths are read (``x`` has no columns and
        ``y`` holds no data), which is what planning an epoch needs. Reading a whole shard
        reads its file with one call and checks its hash on those same bytes. With
        ``buffers``, the result may be views of one of them: valid until it is recycled.
        """
        info = self.shards[index]
        path = self.shard_path(info)
        unhashed = self.check_hashes and index not in self._hashed
        whole = values and buckets is None and (unhashed or self._format.reads_whole)
        data = read_file(path, buffers) if whole else None
        if unhashed:
            self.check_hash(index, data)
        wanted = list(range(len(self.boundaries))) if buckets is None else buckets
        present = [b for b, n in enumerate(info.bucket_sequences) if n]
        parts = self._format.read_buckets(path, wanted, present, self.num_features, values,
                                          data if self._format.reads_whole else None)
        for b, part in zip(wanted, parts, strict=True):
            if len(part) != info.bucket_sequences[b] or \
                    part.num_timesteps != info.bucket_timesteps[b]:
                raise ShardError(
                    f"shard {path} bucket {b} holds {len(part)} sequences / "
                    f"{part.num_timesteps} timesteps, the manifest says "
                    f"{info.bucket_sequences[b]} / {info.bucket_timesteps[b]}")
        return parts

    def check_hash(self, index: int, data: np.ndarray | None = None) -> None:
        """Raise ShardError unless shard ``index`` has the size and SHA-256 of the manifest.

        Reads check each shard once per `Dataset` (the first time it is read), so a
        damaged shard stops training with its name instead of feeding it wrong values.
        ``data``: the file's bytes, if already read.
        """
        info = self.shards[index]
        path = self.shard_path(info)
        try:
            size = path.stat().st_size if data is None else len(data)
            digest = "" if size != info.size else (
                file_sha256(path) if data is None else hashlib.sha256(data).hexdigest())
        except OSError as e:
            raise ShardError(f"shard {path} cannot be read: {e.strerror or e}") from None
        if size != info.size:
            raise ShardError(f"shard {path} is damaged: {size} bytes, the manifest says "
                             f"{info.size}")
        if digest != info.sha256:
            raise ShardError(f"shard {path} is damaged: its SHA-256 does not match the "
                             f"manifest")
        self._hashed.add(index)

    def read_bucket(self, bucket: int) -> Sequences:
        """All sequences of one bucket, shard after shard."""
        if not 0 <= bucket < len(self.boundaries):
            raise IndexError(f"bucket must be in 0..{len(self.boundaries) - 1}, got {bucket}")
        parts = [self.read_shard(i, [bucket])[0] for i, s in enumerate(self.shards)
                 if s.bucket_sequences[bucket]]
        return Sequences.concat(parts, self.num_features)

    def read_all(self) -> Sequences:
        """Every sequence, shard after shard and bucket after bucket."""
        return Sequences.concat([p for i in range(len(self.shards)) for p in self.read_shard(i)],
                                self.num_features)

    def iter_shards(self) -> Iterator[tuple[int, list[Sequences]]]:
        """(shard index, its buckets) for every shard, reading one shard at a time."""
        for i in range(len(self.shards)):
            yield i, self.read_shard(i)

    def batches(self, mode: str = "bucketed", **options) -> Iterator[Batch]:
        """One epoch of batches; see `seqdata.batching.BatchConfig` for the options."""
        from seqdata.batching import BatchConfig, iter_batches

        return iter_batches(self, BatchConfig(mode=mode, **options))

    def num_batches(self, mode: str = "bucketed", **options) -> int:
        """How many batches :meth:`batches` with the same options yields."""
        from seqdata.batching import BatchConfig, plan_epoch

        return len(plan_epoch(self, BatchConfig(mode=mode, **options)))


def open_dataset(path: Path | str, check_hashes: bool = True) -> Dataset:
    """Open a dataset directory after validating its manifest and finding its shards.

    Raises ManifestError for a bad manifest and ShardError for a missing shard. With
    ``check_hashes`` (the default) each shard's SHA-256 is checked the first time it is
    read; turning it off trusts the files as they are.
    """
    root = Path(path)
    manifest = read_manifest(root)
    for info in manifest.shards:
        shard = root / info.path
        if not shard.is_file():
            raise ShardError(f"shard {shard} listed in the manifest is missing")
    return Dataset(root, manifest, check_hashes)
