"""Reading one shard of a dataset: its bytes checked against the manifest, its buckets
checked against the manifest's counts.

Both `seqdata.read.dataset` (training reads) and `seqdata.store.verify` (a full check)
read shards through here, so what a reader accepts and what verify accepts is decided
in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqdata.errors import ShardError
from seqdata.sequences import Sequences
from seqdata.store.atomic import file_sha256
from seqdata.store.buffers import ReadBuffers, read_file
from seqdata.store.formats import get_format
from seqdata.store.manifest import Manifest, ShardInfo


def check_shard_bytes(path: Path, info: ShardInfo, data: np.ndarray | None = None) -> None:
    """Raise ShardError unless the file at ``path`` has the size and SHA-256 of ``info``.

    ``data``: the file's bytes, if already read (they are hashed instead of the file).
    """
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
        raise ShardError(f"shard {path} is damaged: its SHA-256 does not match the manifest")


def read_shard(root: Path, manifest: Manifest, index: int, buckets: Sequence[int] | None = None,
               *, values: bool = True, check_bytes: bool = False,
               buffers: ReadBuffers | None = None) -> list[Sequences]:
    """Buckets ``buckets`` (default: all) of shard ``index``, one `Sequences` each.

    With ``values=False`` only ids and lengths are read (``x`` has no columns and ``y``
    holds no data). With ``check_bytes``, the whole file is read with one call and its
    size and hash are checked on those same bytes first. With ``buffers``, the result
    may be views of one of them: valid until it is recycled. Raises ShardError when a
    bucket does not hold the manifest's counts.
    """
    info = manifest.shards[index]
    path = root / info.path
    fmt = get_format(manifest.format)
    whole = values and buckets is None and (check_bytes or fmt.reads_whole)
    data = read_file(path, buffers) if whole else None
    if check_bytes:
        check_shard_bytes(path, info, data)
    wanted = list(range(len(manifest.boundaries))) if buckets is None else list(buckets)
    present = [b for b, n in enumerate(info.bucket_sequences) if n]
    parts = fmt.read_buckets(path, wanted, present, manifest.spec.num_features, values,
                             data if fmt.reads_whole else None)
    for b, part in zip(wanted, parts, strict=True):
        if len(part) != info.bucket_sequences[b] or \
                part.num_timesteps != info.bucket_timesteps[b]:
            raise ShardError(
                f"shard {path} bucket {b} holds {len(part)} sequences / "
                f"{part.num_timesteps} timesteps, the manifest says "
                f"{info.bucket_sequences[b]} / {info.bucket_timesteps[b]}")
    return parts
