"""Reading Parquet shards as byte ranges of their pages, once pyarrow has read them once.

The first read of a file decodes it with pyarrow and checks it (`parquet.py`); it then
maps where the PLAIN values of each bucket's id, length, x and y columns lie
(`parquet_pages`), and caches that map by (path, device, inode, size, mtime, counts,
features), as `hdf5._layout` does. Later reads copy the values straight from the file
into numpy arrays: a few ``preadv`` calls a shard, no decoding.

Why this gives exactly pyarrow's arrays: pyarrow decoded every page of the mapped buckets
into the manifest's counts of values, and the mapped value bytes of each column add up to
exactly those counts; a page holding more bytes than pyarrow decodes from it would make
them add up to more. So the value bytes are the decoded values, in order. Each sequence's
length comes from the length column, checked on that first read to be the lengths of
the x and y lists.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow.parquet as pq

from seqdata.errors import ShardError
from seqdata.sequences import Sequences
from seqdata.store.buffers import ReadBuffers
from seqdata.store.formats import BucketCounts, lengths_only
from seqdata.store.formats.file_cache import FileCache, file_key
from seqdata.store.formats.parquet_pages import (
    ColumnChunk,
    OtherLayout,
    PageError,
    value_ranges,
)

# column -> (its index in our schema, bytes of one PLAIN value)
COLUMNS = {"id": (0, 8), "length": (1, 4), "x": (3, 4), "y": (4, 4)}
GAP = 1 << 18  # bytes between two wanted ranges read (and dropped) rather than a new call
ALIGN = 64


@dataclass(frozen=True)
class Pages:
    """Where a column's values lie: page ``i``'s are ``sizes[i]`` bytes at file offset
    ``offsets[i]``, and bytes ``starts[i]:starts[i+1]`` of the column's values."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    starts: tuple[int, ...]

    @staticmethod
    def of(ranges: np.ndarray) -> Pages:
        starts = np.zeros(len(ranges) + 1, np.int64)
        np.cumsum(ranges[:, 1], out=starts[1:])
        return Pages(tuple(ranges[:, 0].tolist()), tuple(ranges[:, 1].tolist()),
                     tuple(starts.tolist()))


@dataclass(frozen=True)
class BucketPages:
    """A bucket's row group: its counts and where its columns' values lie."""

    count: int
    timesteps: int
    columns: dict[str, Pages]


LayoutKey = tuple
# bucket -> its pages, for the buckets mapped so far; None: pages of another layout
Layout = dict[int, BucketPages] | None
_LAYOUTS = FileCache()


def layout_key(handle: BinaryIO, path: Path, counts: BucketCounts,
               num_features: int) -> LayoutKey:
    """What the cached map of the open file ``handle`` is kept under."""
    return file_key(handle, path, tuple(counts.items()), num_features)


def cached_pages(key: LayoutKey) -> Layout:
    """The buckets mapped so far of the file ``key`` describes ({} if none), or None if
    its pages are of another writer's layout (read by pyarrow, every time)."""
    return _LAYOUTS.get(key, {})


def map_pages(fd: int, path: Path, pf: pq.ParquetFile, key: LayoutKey,
              groups: dict[int, tuple[int, tuple[int, int]]], num_features: int) -> Layout:
    """Map the pages of buckets ``groups`` (bucket -> (row group, (sequences,
    timesteps))) of a file pyarrow has just decoded and checked, add them to the cache
    under ``key`` and return what it holds for the file.

    A well-formed page of another layout (`OtherLayout`) marks the file as read by
    pyarrow; a malformed one raises ShardError naming the row group and the column.
    """
    file_size = os.fstat(fd).st_size
    mapped: Layout = {}
    try:
        for bucket, (group, (n, total)) in groups.items():
            meta = pf.metadata.row_group(group)
            expected = {"id": 8 * n, "length": 4 * n, "x": 4 * total * num_features,
                        "y": 4 * total}
            columns = {}
            for name, (i, size) in COLUMNS.items():
                column, schema = meta.column(i), pf.schema.column(i)
                if column.has_dictionary_page:
                    raise OtherLayout("a dictionary page")
                chunk = ColumnChunk(column.data_page_offset, column.total_compressed_size,
                                    column.num_values, schema.max_repetition_level,
                                    schema.max_definition_level, size, expected[name])
                try:
                    columns[name] = Pages.of(value_ranges(fd, file_size, chunk))
                except PageError as e:
                    raise ShardError(f"shard {path} row group {group} column {name}: {e}; "
                                     f"expected the pages of seqdata's writer") from None
            mapped[bucket] = BucketPages(n, total, columns)
    except OtherLayout:
        mapped = None
    return _LAYOUTS.update(key, lambda old: None if old is None or mapped is None
                           else {**old, **mapped}, {})


def read_pages(fd: int, path: Path, layout: dict[int, BucketPages], buckets: list[int],
               num_features: int, values: bool,
               buffers: ReadBuffers | None) -> dict[int, Sequences]:
    """Mapped buckets ``buckets`` read straight from their pages into arrays (one buffer
    from ``buffers`` if given): ids and lengths, and with ``values`` x and y."""
    fields = ("id", "length", "x", "y") if values else ("id", "length")
    item = {"id": 8, "length": 4, "x": 4 * num_features, "y": 4}  # bytes a row / a step
    sizes = []
    for b in buckets:
        pages = layout[b]
        rows = {"id": pages.count, "length": pages.count, "x": pages.timesteps,
                "y": pages.timesteps}
        sizes += [rows[f] * item[f] for f in fields]
        sizes += [8 * (pages.count + 1)] + ([pages.timesteps] if values else [])
    padded = [-(-size // ALIGN) * ALIGN for size in sizes]  # every array 64-byte aligned
    buf = np.empty(sum(padded), np.uint8) if buffers is None else buffers.get(sum(padded))
    firsts = (np.cumsum(padded, dtype=np.int64) - padded).tolist()
    regions = iter([buf[a:a + size] for a, size in zip(firsts, sizes, strict=True)])
    pieces: list[tuple[int, memoryview]] = []
    arrays = {}
    for b in buckets:
        got = {}
        for field in fields:
            region = next(regions)
            got[field] = region
            view, at = memoryview(region), 0
            column = layout[b].columns[field]
            for offset, size in zip(column.offsets, column.sizes, strict=True):
                pieces.append((offset, view[at:at + size]))
                at += size
        got["offsets"] = next(regions)
        if values:
            got["y8"] = next(regions)
        arrays[b] = got
    _read_pieces(fd, path, pieces)
    parts = {}
    for b in buckets:
        got, pages = arrays[b], layout[b]
        ids = got["id"].view(np.int64)
        lengths = got["length"].view(np.int32)
        offsets = got["offsets"].view(np.int64)
        offsets[0] = 0
        np.cumsum(lengths, dtype=np.int64, out=offsets[1:])
        if (len(lengths) and lengths.min() < 0) or offsets[-1] != pages.timesteps:
            raise ShardError(f"shard {path} bucket {b}: its length column adds up to "
                             f"{offsets[-1]} (min {lengths.min(initial=0)}), expected "
                             f"{pages.timesteps} timesteps of lengths >= 0")
        if not values:
            parts[b] = lengths_only(offsets, ids)
            continue
        y = got["y8"]
        np.copyto(y, got["y"].view(np.int32), casting="unsafe")  # pyarrow's cast: low byte
        x = got["x"].view(np.float32).reshape(-1, num_features)
        parts[b] = Sequences(x, y, offsets, ids)
    return parts


def read_page_spans(fd: int, path: Path, layout: dict[int, BucketPages], spans: np.ndarray,
                    x_out: np.ndarray, y_out: np.ndarray) -> None:
    """Copy runs of timesteps of mapped buckets into the outputs: run i is timesteps
    ``spans[i, 1]:spans[i, 2]`` of bucket ``spans[i, 0]``, written to ``x_out`` / ``y_out``
    from row ``spans[i, 3]`` (see `seqdata.store.buffers.read_spans_into`)."""
    spans = np.asarray(spans, np.int64).reshape(-1, 4)
    totals = np.array([layout[b].timesteps if b in layout else -1
                       for b in spans[:, 0].tolist()], np.int64).reshape(-1)
    starts, stops, rows = spans[:, 1], spans[:, 2], spans[:, 3]
    bad = (starts < 0) | (stops < starts) | (stops > totals)
    if bad.any():
        bucket, start, stop, _ = spans[np.argmax(bad)].tolist()
        raise ShardError(f"shard {path} bucket {bucket}: timesteps {start}:{stop} asked "
                         f"for, it holds {max(int(totals[np.argmax(bad)]), 0)}")
    if ((rows < 0) | (rows + stops - starts > min(len(x_out), len(y_out)))).any():
        raise ValueError(f"rows past the outputs' {len(y_out)} asked for")
    step = x_out.itemsize * x_out.shape[1]
    x_bytes = memoryview(x_out.reshape(-1).view(np.uint8))
    labels = np.empty(int((stops - starts).max(initial=0)), np.int32)
    label_bytes = memoryview(labels.view(np.uint8))
    for bucket, start, stop, at in spans.tolist():
        pages, n = layout[bucket], stop - start
        _read_column(fd, path, pages.columns["x"], start * step,
                     x_bytes[at * step:(at + n) * step])
        _read_column(fd, path, pages.columns["y"], start * 4, label_bytes[:4 * n])
        y_out[at:at + n] = labels[:n]  # int32 to uint8: the low byte, as pyarrow


def _read_column(fd: int, path: Path, pages: Pages, start: int, out: memoryview) -> None:
    """Bytes ``start:start + len(out)`` of a column's values (its pages' values one after
    the other) into ``out``."""
    page, done = bisect_right(pages.starts, start) - 1, 0
    while done < len(out):
        within = start + done - pages.starts[page]
        take = min(len(out) - done, pages.sizes[page] - within)
        _preadv_all(fd, path, [out[done:done + take]], pages.offsets[page] + within)
        done += take
        page += 1


def _read_pieces(fd: int, path: Path, pieces: list[tuple[int, memoryview]]) -> None:
    """Read each (file offset, buffer) piece: pieces close together in the file are one
    ``preadv``, the bytes between them read into a scratch buffer and dropped."""
    pieces.sort(key=lambda piece: piece[0])
    scratch = memoryview(bytearray(GAP))
    views: list[memoryview] = []
    first = end = 0
    limit = min(os.sysconf("SC_IOV_MAX"), 1024) - 1
    for offset, view in pieces:
        if views and not (end <= offset <= end + GAP and len(views) < limit):
            _preadv_all(fd, path, views, first)
            views = []
        if not views:
            first = end = offset
        if offset > end:
            views.append(scratch[:offset - end])
        views.append(view)
        end = offset + len(view)
    if views:
        _preadv_all(fd, path, views, first)


def _preadv_all(fd: int, path: Path, views: list[memoryview], offset: int) -> None:
    """Fill ``views`` from file offset ``offset`` on, in as many calls as it takes."""
    views = [v for v in views if len(v)]
    while views:
        got = os.preadv(fd, views, offset)
        if got <= 0:
            raise ShardError(f"shard {path} ended early: truncated")
        offset += got
        while views and got >= len(views[0]):
            got -= len(views[0])
            views.pop(0)
        if views and got:
            views[0] = views[0][got:]
