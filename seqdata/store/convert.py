"""Convert a dataset: the same sequences in another format, bucketing or layout.

The source (either layout: manifest_version 1 or 2) is read shard by shard, each shard's
bytes and content checked as any read checks them; each chunk's sequences, sorted by
length (ties by id) as generation lays them out, are written through the build's own
shard writer (`seqdata.store.build.build_from`). So a converted dataset is, byte for byte,
the dataset that ``seqdata generate`` writes for the same spec, format and boundaries,
card and manifest included. Like a build, the manifest is written last; a conversion that
fails removes what it wrote in a directory it found empty.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from seqdata.errors import OutputError, ShardError
from seqdata.sequences import Sequences
from seqdata.store.build import (
    ShardBuffers,
    build_from,
    resolve_boundaries,
)
from seqdata.store.formats import get_format
from seqdata.store.journal import BuildPlan
from seqdata.store.lock import LOCK_NAME
from seqdata.store.manifest import Manifest, read_manifest
from seqdata.store.remote import Remote, is_url, open_remote
from seqdata.store.shards import read_shard


def convert_dataset(src: Path | str, dst: Path | str, fmt: str | None = None,
                    boundaries: Sequence[int] | None = None, num_buckets: int | None = None,
                    overwrite: bool = False, progress: bool = True) -> Manifest:
    """Write the sequences of dataset ``src`` to ``dst`` as ``fmt`` shards (default: the
    source's format), bucketed by ``boundaries`` or into ``num_buckets`` buckets (default:
    the source's boundaries), in the current layout; the new manifest.

    Raises ManifestError or ShardError for a bad source, OutputError for an output that
    cannot be used (``src`` itself or inside it, not empty without ``overwrite``).

    >>> import tempfile
    >>> from seqdata.spec import LagSumSpec
    >>> from seqdata.store.build import build_dataset
    >>> d = tempfile.mkdtemp()
    >>> _ = build_dataset(f"{d}/h5", LagSumSpec(num_sequences=50), progress=False)
    >>> m = convert_dataset(f"{d}/h5", f"{d}/pq", "parquet", num_buckets=2, progress=False)
    >>> m.format, m.num_sequences, len(m.boundaries)
    ('parquet', 50, 2)
    """
    root, source, fetch = _open_source(src)
    fmt = source.format if fmt is None else fmt
    get_format(fmt)
    if boundaries is None and num_buckets is None:
        bounds = source.boundaries
    else:
        bounds = resolve_boundaries(source.spec, boundaries, num_buckets)
    _check_apart(src, dst)
    plan = BuildPlan(source.spec, fmt, bounds)
    reader = _reader(root, source, fetch)
    if is_url(dst):  # built in a staging directory of its own, then uploaded
        return build_from(dst, plan, overwrite=overwrite, progress=progress, source=reader,
                          label="convert", discard_on_error=True)
    dst = Path(dst)
    created = not dst.exists()
    fresh = created or (dst.is_dir() and not any(p.name != LOCK_NAME for p in dst.iterdir()))
    try:
        return build_from(dst, plan, overwrite=overwrite, progress=progress, source=reader,
                          label="convert", discard_on_error=fresh)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                dst.rmdir()  # only if nothing is left in it
        raise


def _open_source(src: Path | str) -> tuple[Path, Manifest, Callable[[int], None] | None]:
    """The source's local directory, its manifest, and for a URL what fetches a shard
    into that directory (the cache), all of them fetching ahead in order."""
    if is_url(src):
        remote = open_remote(str(src))
        remote.expect(range(len(remote.manifest.shards)))
        return remote.local, remote.manifest, remote.fetch
    root = Path(src)
    source = read_manifest(root)
    for info in source.shards:
        if not (root / info.path).is_file():
            raise ShardError(f"shard {root / info.path} listed in the manifest of {root} is "
                             f"missing; nothing was converted")
    return root, source, None


def _location_key(location: Path | str) -> PurePosixPath:
    """What identifies a location: a resolved directory (a ``file://`` URL's too), or a
    URL without its trailing slashes."""
    if is_url(location):
        remote = Remote(str(location))
        if remote.local_dir is None:
            return PurePosixPath(remote.url)
        location = remote.local_dir
    return PurePosixPath(Path(location).resolve())


def _check_apart(src: Path | str, dst: Path | str) -> None:
    """Refuse an output that is the source, lies inside it, or holds it."""
    a, b = _location_key(src), _location_key(dst)
    if a == b or b.is_relative_to(a) or a.is_relative_to(b):
        where = "is" if a == b else "lies inside" if b.is_relative_to(a) else "holds"
        raise OutputError(f"output {dst} {where} the source dataset {src}; convert to a "
                          f"directory of its own")


def _reader(root: Path, manifest: Manifest, fetch: Callable[[int], None] | None = None):
    """Chunk -> its sequences in ``root``'s shard (fetched first by ``fetch``, if given),
    sorted by length, ties by id."""
    def read(chunk: int, _: ShardBuffers) -> Sequences:
        if fetch is not None:
            fetch(chunk)
        parts = read_shard(root, manifest, chunk, check_bytes=True)
        seqs = Sequences.concat(parts, manifest.spec.num_features)
        order = np.lexsort((seqs.ids, seqs.lengths))
        if np.any(order != np.arange(len(order))):  # a shard another tool reordered
            seqs = seqs.take(order)
        return seqs
    return read

