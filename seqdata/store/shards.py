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

from seqdata.buckets import bucket_lower_bounds
from seqdata.errors import ShardError
from seqdata.sequences import Sequences
from seqdata.spec import LagSumSpec
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
    holds no data). With ``check_bytes``, the whole file is read with one call, its size
    and hash are checked on those same bytes first, and a whole-shard read then checks
    its content (`content_problems`). With ``buffers``, the result may be views of one
    of them: valid until it is recycled. Raises ShardError when a bucket does not hold
    the manifest's counts, or the content breaks an invariant.
    """
    info = manifest.shards[index]
    path = root / info.path
    fmt = get_format(manifest.format)
    whole = values and buckets is None and (check_bytes or fmt.reads_whole)
    data = read_file(path, buffers) if whole else None
    if check_bytes:
        check_shard_bytes(path, info, data)
    wanted = list(range(len(manifest.boundaries))) if buckets is None else list(buckets)
    parts = fmt.read_buckets(path, wanted, _counts(info), manifest.spec.num_features, values,
                             data, buffers)
    for b, part in zip(wanted, parts, strict=True):
        if len(part) != info.bucket_sequences[b] or \
                part.num_timesteps != info.bucket_timesteps[b]:
            raise ShardError(
                f"shard {path} bucket {b} holds {len(part)} sequences / "
                f"{part.num_timesteps} timesteps, the manifest says "
                f"{info.bucket_sequences[b]} / {info.bucket_timesteps[b]}")
    if check_bytes and values and buckets is None:
        meta = read_shard(root, manifest, index, values=False)
        problems = content_problems(manifest, info, parts, meta)
        if problems:
            raise ShardError(f"shard {path} is damaged: {problems[0]}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return parts


def read_spans(root: Path, manifest: Manifest, index: int, spans: np.ndarray,
               x_out: np.ndarray, y_out: np.ndarray) -> bool:
    """Runs of timesteps of shard ``index`` copied straight into ``x_out`` / ``y_out``
    (see the formats' ``read_spans``); False if the shard reads whole buckets only."""
    info = manifest.shards[index]
    return get_format(manifest.format).read_spans(root / info.path, _counts(info),
                                                  manifest.spec.num_features, spans,
                                                  x_out, y_out)


def _counts(info: ShardInfo) -> dict[int, tuple[int, int]]:
    """Non-empty bucket -> (sequences, timesteps) of a shard, as the manifest lists them."""
    return {b: (n, t) for b, (n, t) in enumerate(zip(info.bucket_sequences,
                                                      info.bucket_timesteps, strict=True))
            if n}


def value_range(spec: LagSumSpec) -> tuple[float, float]:
    """The lowest and the highest value the spec can generate: U[0, 1), and with the
    seed's leak, feature 0 holds a sum of ``window`` of them."""
    return 0.0, float(spec.window if spec.seed_compat_leak else 1.0)


def in_range(x: np.ndarray, high: float) -> bool:
    """Whether every value of float32 ``x`` is in [+0.0, ``high``], in one pass.

    The bits of a non-negative float32 read as an unsigned integer grow with its value,
    and every negative number (sign bit set), infinity and NaN reads as more than
    ``high``'s bits: one integer max over the flat array tests finiteness and both bounds.
    """
    if not x.size:
        return True
    flat = np.ascontiguousarray(x).reshape(-1).view(np.uint32)
    return int(flat.max()) <= int(np.float32(high).view(np.uint32))


def content_problems(manifest: Manifest, info: ShardInfo, parts: Sequence[Sequences],
                     meta: Sequence[Sequences]) -> list[str]:
    """What is wrong with a shard's content, cheap checks only (a few passes over its
    arrays): ids exactly the chunk's, each unique; lengths within each bucket's range;
    the stored lengths and ids (``meta``, a lengths-only read) agreeing with the
    sequences; labels 0 or 1; values finite and in the spec's range."""
    spec = manifest.spec
    problems = []
    start, stop = spec.chunk_ids(info.chunk)
    ids = np.concatenate([p.ids for p in parts])
    if not np.array_equal(np.sort(ids), np.arange(start, stop)):
        problems.append(f"ids are not exactly {start}..{stop - 1}, each once")
    lows = bucket_lower_bounds(manifest.boundaries, spec.lengths.low)
    low, high = value_range(spec)
    for b, (part, m) in enumerate(zip(parts, meta, strict=True)):
        if not len(part):
            continue
        lengths = part.lengths
        if not (np.array_equal(lengths, m.lengths) and np.array_equal(part.ids, m.ids)):
            problems.append(f"bucket {b}: stored lengths or ids disagree with the sequences")
        if lengths.min() < lows[b] or lengths.max() > manifest.boundaries[b]:
            problems.append(f"bucket {b}: lengths {lengths.min()}..{lengths.max()} outside "
                            f"{lows[b]}..{manifest.boundaries[b]}")
        if part.y.max() > 1:
            problems.append(f"bucket {b}: labels other than 0 and 1")
        if not in_range(part.x, high):
            problems.append(f"bucket {b}: values outside the spec's range [{low}, {high}] "
                            f"or not finite (min {part.x.min()}, max {part.x.max()})")
    return problems
