"""Parquet shards: one row group per non-empty bucket, one row per sequence.

Columns (see docs/FORMAT.md): ``id`` int64, ``length`` int32, ``bucket`` int32,
``x`` list<fixed_size_list<float32, F>>, ``y`` list<uint8>, every level declared not
null (pyarrow then decodes the nested columns 1.35x faster: no definition levels to
check). No compression and no dictionary encoding (useless on random floats, and it slows
decoding). Arrow buffers are built from the flat numpy arrays without per-sequence work.

The first read of a file decodes it with pyarrow, checks it and maps its pages; later
reads copy the values straight from the pages (`parquet_read`), faster than pyarrow can
decode them, and read runs of a bucket's timesteps (`read_spans`) as HDF5 does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqdata.errors import ShardError
from seqdata.sequences import Sequences
from seqdata.store.atomic import open_regular
from seqdata.store.buffers import ReadBuffers
from seqdata.store.formats import BucketCounts, BucketRun, lengths_only
from seqdata.store.formats.parquet_read import (
    Layout,
    LayoutKey,
    cached_pages,
    layout_key,
    map_pages,
    read_page_spans,
    read_pages,
)
from seqdata.store.memfile import MemoryFile

SHARD_VERSION = 2  # 2: every level of x and y declared not null


def _required(name: str, kind: pa.DataType) -> pa.Field:
    return pa.field(name, kind, nullable=False)


def arrow_schema(num_features: int) -> pa.Schema:
    """The Parquet schema other frameworks rely on."""
    step = pa.list_(_required("item", pa.float32()), num_features)
    return pa.schema([
        _required("id", pa.int64()),
        _required("length", pa.int32()),
        _required("bucket", pa.int32()),
        _required("x", pa.list_(_required("item", step))),
        _required("y", pa.list_(_required("item", pa.uint8()))),
    ])


def _table(part: Sequences, bucket: int, schema: pa.Schema) -> pa.Table:
    x_type, y_type = schema.field("x").type, schema.field("y").type
    offsets = pa.array(part.offsets.astype(np.int32))
    steps = pa.FixedSizeListArray.from_arrays(pa.array(part.x.reshape(-1)),
                                              type=x_type.value_type)
    return pa.table([
        pa.array(part.ids),
        pa.array(part.lengths),
        pa.array(np.full(len(part), bucket, np.int32)),
        pa.ListArray.from_arrays(offsets, steps, type=x_type),
        pa.ListArray.from_arrays(offsets, pa.array(part.y), type=y_type),
    ], schema=schema)


class ParquetFormat:
    reads_whole = False  # values are read straight from the file's pages into the arrays
    reads_spans = True  # a run of a bucket's timesteps is byte ranges of mapped pages

    def encode(self, out: MemoryFile, seqs: Sequences, runs: Sequence[BucketRun],
               chunk: int) -> None:
        schema = arrow_schema(seqs.x.shape[1]).with_metadata(
            {"seqdata_format_version": str(SHARD_VERSION), "chunk": str(chunk)})
        with pq.ParquetWriter(out, schema, compression="none", use_dictionary=False,
                              write_statistics=["id", "length", "bucket"]) as writer:
            for bucket, start, stop in runs:
                table = _table(seqs.slice(start, stop), bucket, schema)
                writer.write_table(table, row_group_size=max(1, len(table)))

    def read_buckets(self, path: Path, buckets: Sequence[int], counts: BucketCounts,
                     num_features: int, values: bool = True,
                     data: np.ndarray | None = None,
                     buffers: ReadBuffers | None = None) -> list[Sequences]:
        wanted = [b for b in buckets if b in counts]
        try:
            with open_regular(path) as handle:
                key = layout_key(handle, path, counts, num_features)
                pages = cached_pages(key)
                if pages is not None and all(b in pages for b in wanted):
                    parts = read_pages(handle.fileno(), path, pages, wanted, num_features,
                                       values, buffers)
                else:
                    parts, _ = _decode(handle, path, counts, num_features, wanted, values, key,
                                       data)
        except ShardError:
            raise
        except (OSError, pa.ArrowException, ValueError, TypeError, IndexError) as e:
            raise ShardError(f"shard {path} is not a readable seqdata Parquet shard: {e}") from None
        empty = Sequences.empty(num_features if values else 0)
        return [parts.get(b, empty) for b in buckets]

    def read_spans(self, path: Path, counts: BucketCounts, num_features: int,
                   spans: np.ndarray, x_out: np.ndarray, y_out: np.ndarray) -> bool:
        try:
            with open_regular(path) as handle:
                key = layout_key(handle, path, counts, num_features)
                pages = cached_pages(key)
                if pages is not None and len(pages) < len(counts):
                    # Map the pages first: a whole decode, checked (see `_decode`).
                    _, pages = _decode(handle, path, counts, num_features, sorted(counts),
                                       True, key)
                if pages is None:  # another writer's layout: decoded whole by pyarrow
                    return False
                read_page_spans(handle.fileno(), path, pages, spans, x_out, y_out)
        except ShardError:
            raise
        except (OSError, pa.ArrowException, ValueError, TypeError, IndexError) as e:
            raise ShardError(f"shard {path} is not a readable seqdata Parquet shard: {e}") from None
        return True


def _decode(handle: BinaryIO, path: Path, counts: BucketCounts, num_features: int,
            buckets: list[int], values: bool, key: LayoutKey,
            data: np.ndarray | None = None) -> tuple[dict[int, Sequences], Layout]:
    """Buckets ``buckets`` decoded by pyarrow, after checking the file's schema and row
    groups against ``counts``; with ``values``, the length column is checked against the
    lists and the decoded buckets' pages are mapped and cached under ``key`` (unless the
    file has pages of another layout), so that later reads go straight to the pages.
    Returns the buckets and what the cache then holds for the file."""
    present = sorted(counts)
    source = _arrow_source(handle, path, key, data)
    pf = pq.ParquetFile(source)
    if pf.metadata.num_row_groups != len(present):
        raise ShardError(f"shard {path} has {pf.metadata.num_row_groups} row groups, "
                         f"the manifest expects {len(present)} (one per bucket)")
    expected = arrow_schema(num_features)
    if not pf.schema_arrow.remove_metadata().equals(expected):
        found = " ".join(str(pf.schema_arrow.remove_metadata()).split())
        raise ShardError(f"shard {path} has schema {found}, expected "
                         f"{' '.join(str(expected).split())}")
    for group, bucket in enumerate(present):
        _check_row_group(pf.metadata.row_group(group), counts[bucket], num_features,
                         f"shard {path} row group {group}")
    index = {b: i for i, b in enumerate(present)}
    if not values:
        return {b: _read_lengths(pf, index[b], b, path) for b in buckets}, cached_pages(key)
    groups = _read_groups(source, pf, [index[b] for b in buckets])
    parts = {b: _sequences(*groups[index[b]], path, index[b], b, num_features)
             for b in buckets}
    layout = map_pages(handle.fileno(), path, pf, key,
                       {b: (index[b], counts[b]) for b in buckets}, num_features)
    return parts, layout


def _arrow_source(handle: BinaryIO, path: Path, key: LayoutKey,
                  data: np.ndarray | None) -> pa.NativeFile:
    """The file ``key`` describes, as a source pyarrow reads without Python objects:
    ``data`` (its bytes, read already and hashed), else the file reopened, checked to be
    the one ``handle`` has open.

    pyarrow's pool threads release a source after read_table returns. Had it a Python
    file or buffer to release, they would take the GIL, and a thread that takes the GIL
    while the interpreter exits is killed mid C++ frame: an abort after the work is done.
    ``data`` is borrowed, not referenced: the caller holds it until the decoded arrays,
    which own their memory, are built."""
    if data is not None:
        if len(data) != key[3]:
            raise ShardError(f"shard {path} changed while it was read")
        return pa.BufferReader(pa.foreign_buffer(data.ctypes.data, len(data)))
    source = pa.OSFile(str(path))
    opened, held = os.fstat(source.fileno()), os.fstat(handle.fileno())
    if (opened.st_dev, opened.st_ino) != (held.st_dev, held.st_ino):
        source.close()
        raise ShardError(f"shard {path} changed while it was read")
    return source


def _read_groups(source: pa.NativeFile, pf: pq.ParquetFile,
                 groups: list[int]) -> dict[int, list[pa.Array]]:
    """(id, length, bucket, x, y) arrays of row groups ``groups``, decoded without
    concatenation."""
    columns = ["id", "length", "bucket", "x", "y"]
    if len(groups) < pf.metadata.num_row_groups:
        return {g: [_one_chunk(c) for c in pf.read_row_group(g, columns=columns).columns]
                for g in groups}
    # read_table decodes row groups in parallel, a chunk per row group: the fast path.
    table = pq.read_table(source, columns=columns)
    result, start = {}, 0
    for g in groups:
        rows = pf.metadata.row_group(g).num_rows
        result[g] = [_one_chunk(c.slice(start, rows)) for c in table.columns]
        start += rows
    return result


def _read_lengths(pf: pq.ParquetFile, group: int, bucket: int, path: Path) -> Sequences:
    table = pf.read_row_group(group, columns=["id", "length", "bucket"])
    lengths = table.column("length").to_numpy()
    if len(lengths) and lengths.min() < 0:
        raise ShardError(f"shard {path} row group {group} holds negative lengths")
    if np.any(table.column("bucket").to_numpy() != bucket):
        raise ShardError(f"shard {path} row group {group} holds rows of buckets other "
                         f"than {bucket}")
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return lengths_only(offsets, table.column("id").to_numpy().astype(np.int64, copy=False))


PLAIN_ENCODINGS = {"PLAIN", "RLE"}  # values plain, list levels run-length encoded


def _check_row_group(group: pq.RowGroupMetaData, count: tuple[int, int], num_features: int,
                     where: str) -> None:
    """Refuse a row group that is not what our writer makes for ``count`` (sequences,
    timesteps), before anything is decoded: its rows and every column's value count must
    be the manifest's, and its columns stored plain and uncompressed (a compressed or
    dictionary-encoded page can expand a few bytes into gigabytes)."""
    n, total = count
    if group.num_rows != n:
        raise ShardError(f"{where} has {group.num_rows} rows, the manifest says {n}")
    values = {"id": n, "length": n, "bucket": n, "x": total * num_features, "y": total}
    for i in range(group.num_columns):
        column = group.column(i)
        name = column.path_in_schema.split(".")[0]
        if column.compression != "UNCOMPRESSED" or column.has_dictionary_page or \
                not set(column.encodings) <= PLAIN_ENCODINGS:
            raise ShardError(f"{where} column {name} is stored {column.compression} with "
                             f"encodings {list(column.encodings)}; seqdata shards are "
                             f"uncompressed and plain")
        if column.num_values != values.get(name):
            raise ShardError(f"{where} column {name} holds {column.num_values} values, the "
                             f"manifest's {n} sequences / {total} timesteps make "
                             f"{values.get(name)}")


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as it is, or the chunks concatenated."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _sequences(ids: pa.Array, lengths: pa.Array, bucket_of: pa.Array, xs: pa.ListArray,
               ys: pa.ListArray, path: Path, group: int, bucket: int,
               num_features: int) -> Sequences:
    """One row group's arrays as `Sequences`: views of Arrow's buffers, no copies.

    The length column must give the lengths of the x and y lists: later reads take each
    sequence's length from it (`parquet_read`), which must give what pyarrow gives."""
    if xs.null_count or ys.null_count:
        raise ShardError(f"shard {path} row group {group} holds null sequences")
    offsets = xs.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0]
    steps = xs.flatten()  # honours the list offsets
    x = steps.flatten().to_numpy(zero_copy_only=False).reshape(-1, num_features)
    y = ys.flatten().to_numpy(zero_copy_only=False)
    y_offsets = ys.offsets.to_numpy()
    if not np.array_equal(y_offsets - y_offsets[0], offsets) or len(x) != len(y):
        raise ShardError(f"shard {path} row group {group}: x and y lengths differ")
    if not np.array_equal(lengths.to_numpy(zero_copy_only=False), np.diff(offsets)):
        raise ShardError(f"shard {path} row group {group}: stored lengths or ids disagree "
                         f"with the sequences (its length column is not the lengths of its "
                         f"x and y lists)")
    if np.any(bucket_of.to_numpy(zero_copy_only=False) != bucket):
        raise ShardError(f"shard {path} row group {group} holds rows of buckets other "
                         f"than {bucket}")
    return Sequences(x, y, offsets, ids.to_numpy().astype(np.int64, copy=False))


FORMAT = ParquetFormat()
