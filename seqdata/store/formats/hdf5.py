"""HDF5 shards: one group per non-empty bucket holding flat, contiguous arrays.

Layout (see docs/FORMAT.md): root attributes ``seqdata_format_version``, ``chunk``,
``num_features``; groups ``bucket_0003`` with datasets ``x`` float32 (T, F), ``y`` uint8
(T,), ``offsets`` int64 (n + 1,), ``ids`` int64 (n,). Datasets are contiguous and
uncompressed, so a bucket is read with a few large reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import h5py
import numpy as np

from seqdata.errors import ShardError
from seqdata.sequences import Sequences
from seqdata.store.atomic import open_regular
from seqdata.store.buffers import ReadBuffers, SpanBases, read_spans_into
from seqdata.store.formats import BucketCounts, BucketRun, lengths_only
from seqdata.store.formats.file_cache import FileCache, file_key
from seqdata.store.memfile import MemoryFile

SHARD_VERSION = 1
FIELDS = {"x": np.float32, "y": np.uint8, "offsets": np.int64, "ids": np.int64}


def group_name(bucket: int) -> str:
    return f"bucket_{bucket:04d}"


class Hdf5Format:
    reads_whole = True  # one read call, then views: no h5py call per dataset
    reads_spans = True  # contiguous datasets: a run of sequences is one byte range

    def encode(self, out: MemoryFile, seqs: Sequences, runs: Sequence[BucketRun],
               chunk: int) -> None:
        # HDF5 writes into memory through h5py's file-object driver; the caller writes the
        # image to disk with Python, where a full disk is a clean ENOSPC (HDF5's own file
        # driver crashes the process with SIGSEGV on it).
        # track_times=False keeps the bytes reproducible (no creation times in headers).
        # Datasets are made with the low-level API (what h5py's create_dataset does, less
        # its ~80 us of Python per dataset): the same calls, so the same bytes.
        gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        gcpl.set_obj_track_times(False)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_obj_track_times(False)
        with h5py.File(out, "w") as f:
            f.attrs["seqdata_format_version"] = SHARD_VERSION
            f.attrs["chunk"] = chunk
            f.attrs["num_features"] = seqs.x.shape[1]
            for bucket, start, stop in runs:
                part = seqs.slice(start, stop)
                gid = h5py.h5g.create(f.id, group_name(bucket).encode(), gcpl=gcpl)
                for field, value in (("x", part.x), ("y", part.y), ("offsets", part.offsets),
                                     ("ids", part.ids)):
                    value = np.ascontiguousarray(value)
                    dsid = h5py.h5d.create(gid, field.encode(), h5py.h5t.py_create(value.dtype),
                                           h5py.h5s.create_simple(value.shape), dcpl=dcpl)
                    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, value)

    def read_buckets(self, path: Path, buckets: Sequence[int], counts: BucketCounts,
                     num_features: int, values: bool = True,
                     data: np.ndarray | None = None,
                     buffers: ReadBuffers | None = None) -> list[Sequences]:
        del buffers  # a whole read comes as ``data`` (read into them); parts read themselves
        present = tuple(sorted(counts))
        try:
            with open_regular(path) as handle:
                mapped = _layout(handle, path, counts, num_features)
                if mapped is None:  # chunked (rewritten by another tool): let h5py read it
                    with h5py.File(handle, "r") as f:
                        parts = {b: _read_group(f, b, values) for b in buckets if b in present}
                else:
                    parts = _read_extents(handle, path, mapped.extents,
                                          [b for b in buckets if b in present], values, data)
        except ShardError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
            raise ShardError(f"shard {path} is not a readable seqdata HDF5 shard: {e}") from None
        result = []
        for b in buckets:
            if b not in parts:
                result.append(Sequences.empty(num_features))
                continue
            x, y, offsets, ids, total = parts[b]
            if (offsets.shape != (len(ids) + 1,) or offsets[0] != 0
                    or offsets[-1] != total or np.any(np.diff(offsets) < 0)):
                raise ShardError(f"shard {path} {group_name(b)}: offsets{offsets.shape} ending "
                                 f"at {offsets[-1] if len(offsets) else None} do not match "
                                 f"{total} timesteps and {len(ids)} ids")
            result.append(Sequences(x, y, offsets, ids) if values else lengths_only(offsets, ids))
        return result

    def read_spans(self, path: Path, counts: BucketCounts, num_features: int,
                   spans: np.ndarray, x_out: np.ndarray, y_out: np.ndarray) -> bool:
        try:
            with open_regular(path) as handle:
                mapped = _layout(handle, path, counts, num_features)
                if mapped is None:  # chunked: h5py reads it, a bucket at a time
                    return False
                read_spans_into(handle.fileno(), path, mapped.bases, spans, x_out, y_out)
        except ShardError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
            raise ShardError(f"shard {path} is not a readable seqdata HDF5 shard: {e}") from None
        return True


# (offset in the file, shape) of each field of each bucket's group
Layout = dict[int, dict[str, tuple[int, tuple[int, ...]]]]


class Mapped(NamedTuple):
    """Where a shard's datasets lie: each field's extent, and what span reads need."""

    extents: Layout
    bases: SpanBases


_LAYOUTS = FileCache()
_UNKNOWN = object()


def _layout(handle: BinaryIO, path: Path, counts: BucketCounts,
            num_features: int) -> Mapped | None:
    """Where each dataset of the shard open as ``handle`` lies in the file, after checking
    that the file holds exactly our layout (see `_checked_fields`); None if some dataset
    is chunked or compact (a shard rewritten by another tool, read through h5py).

    Cached by the file's version (`file_key`): later epochs read a shard without h5py.
    """
    present = tuple(sorted(counts))
    key = file_key(handle, path, tuple(counts.items()), num_features)
    known = _LAYOUTS.get(key, _UNKNOWN)
    if known is not _UNKNOWN:
        return known
    st = os.fstat(handle.fileno())
    layout: Layout | None = {}
    with h5py.File(handle, "r") as f:
        expected = [group_name(b) for b in present]
        found = sorted(f)
        if found != expected:
            raise ShardError(f"shard {path} holds {found[:8]}, the manifest expects "
                             f"groups {expected[:8]}")
        for bucket in present:
            fields = _checked_fields(f, bucket, path, counts[bucket], num_features)
            extents = {}
            for field, (ds, plist) in fields.items():
                if plist.get_layout() in (h5py.h5d.CHUNKED, h5py.h5d.COMPACT):
                    layout = None
                    break
                offset = ds.get_offset() if np.prod(ds.shape) else 0
                if offset is None:  # contiguous but never written
                    raise ShardError(f"shard {path} {group_name(bucket)}/{field} has no "
                                     f"data stored")
                if offset + ds.get_storage_size() > st.st_size:
                    raise ShardError(f"shard {path} {group_name(bucket)}/{field} lies past "
                                     f"the end of the file ({st.st_size} bytes): truncated")
                extents[field] = (offset, ds.shape)
            if layout is None:
                break
            layout[bucket] = extents
    mapped = None if layout is None else Mapped(layout, {
        b: (e["x"][0], e["y"][0], e["y"][1][0]) for b, e in layout.items()})
    return _LAYOUTS.update(key, lambda _: mapped)


def _checked_fields(f: h5py.File, bucket: int, path: Path, count: tuple[int, int],
                    num_features: int) -> dict[str, tuple[h5py.h5d.DatasetID, h5py.h5p.PropDCID]]:
    """The four datasets of a bucket's group, checked to be what our writer makes.

    The group and its datasets are hard links (an external or soft link reads another
    file or object); the group holds nothing else; each dataset is stored in this file
    (no external storage, no virtual dataset: both read bytes of other files), compact,
    contiguous or chunked with filters this HDF5 has, with the dtype and the shape that
    the manifest's counts (``count``: sequences, timesteps) give it. Shapes are checked
    before any data is read, so nothing larger than the manifest says is allocated.
    Returns each dataset with its creation properties. (h5py's low-level API: its
    high-level objects cost 10x more, and a first epoch checks every bucket of every
    shard.)
    """
    name = group_name(bucket)
    where = f"shard {path} {name}"
    if not _hard_link(f.id, name):
        raise ShardError(f"{where} is a link, expected a group stored in the shard")
    group = h5py.h5o.open(f.id, name.encode())
    members = (sorted(m.decode() for m in group) if isinstance(group, h5py.h5g.GroupID)
               else None)
    if members != sorted(FIELDS):
        found = _kind(group) if members is None else members
        raise ShardError(f"{where} holds {found}, expected {sorted(FIELDS)}")
    n, total = count
    shapes = {"x": (total, num_features), "y": (total,), "offsets": (n + 1,), "ids": (n,)}
    fields = {}
    for field, dtype in FIELDS.items():
        if not _hard_link(group, field):
            raise ShardError(f"{where}/{field} is a link, expected data stored in the shard")
        ds = h5py.h5o.open(group, field.encode())
        if not isinstance(ds, h5py.h5d.DatasetID) or ds.dtype != np.dtype(dtype):
            found = ds.dtype if isinstance(ds, h5py.h5d.DatasetID) else _kind(ds)
            raise ShardError(f"{where}/{field}: expected {np.dtype(dtype)} data, found {found}")
        plist = ds.get_create_plist()
        if plist.get_layout() == h5py.h5d.VIRTUAL or plist.get_external_count():
            kind = "a virtual dataset" if plist.get_layout() == h5py.h5d.VIRTUAL else \
                "stored in external files"
            raise ShardError(f"{where}/{field} is {kind}: it would read other files; "
                             f"expected data stored in the shard")
        for i in range(plist.get_nfilters()):
            code = plist.get_filter(i)[0]
            if not h5py.h5z.filter_avail(code):
                raise ShardError(f"{where}/{field} needs HDF5 filter {code}, which this "
                                 f"HDF5 does not have")
        if ds.shape != shapes[field]:
            raise ShardError(f"{where}/{field} has shape {ds.shape}, the manifest's "
                             f"{n} sequences / {total} timesteps make it {shapes[field]}")
        fields[field] = ds, plist
    return fields


def _hard_link(group: h5py.h5g.GroupID, name: str) -> bool:
    """Whether ``name`` in ``group`` is a hard link (an object stored in this file)."""
    return group.links.get_info(name.encode()).type == h5py.h5l.TYPE_HARD


def _kind(obj: h5py.h5o.ObjectID) -> str:
    """What an HDF5 object is, in a word: Group, Dataset, Type."""
    return type(obj).__name__.removesuffix("ID")


# x, y (None without values), offsets, ids, number of timesteps
Arrays = tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray, int]


def _read_extents(handle: BinaryIO, path: Path, layout: Layout, buckets: list[int],
                  values: bool, data: np.ndarray | None) -> dict[int, Arrays]:
    """The buckets' arrays as views of ``data`` (the whole file), or read from ``handle``
    (the file open at ``path``)."""
    def view(field: str, extent: tuple[int, tuple[int, ...]]) -> np.ndarray:
        offset, shape = extent
        dtype = np.dtype(FIELDS[field])
        count = int(np.prod(shape))
        if data is not None:
            return np.frombuffer(data, dtype, count, offset).reshape(shape)
        out = np.empty(shape, dtype)
        handle.seek(offset)
        if handle.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise ShardError(f"shard {path} ended early: truncated")
        return out

    parts = {}
    for b in buckets:
        extents = layout[b]
        offsets, ids = view("offsets", extents["offsets"]), view("ids", extents["ids"])
        x, y = (view("x", extents["x"]), view("y", extents["y"])) if values else (None, None)
        parts[b] = (x, y, offsets, ids, extents["y"][1][0])
    return parts


def _read_group(f: h5py.File, bucket: int, values: bool) -> Arrays:
    group = f[group_name(bucket)]
    x, y = (group["x"][()], group["y"][()]) if values else (None, None)
    return x, y, group["offsets"][()], group["ids"][()], group["y"].shape[0]


FORMAT = Hdf5Format()
