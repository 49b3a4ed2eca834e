"""Parquet shards read as byte ranges of their pages (`parquet_pages`, `parquet_read`):
the arrays pyarrow decodes, pyarrow only on a file's first read, and page headers that
are not our writer's refused with one line, or read by pyarrow where they are another
writer's valid layout."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqdata import BatchConfig, LagSumSpec, ShardError, build_dataset, open_dataset
from seqdata.store.buffers import ReadBuffers
from seqdata.store.formats import parquet_read
from seqdata.store.formats.parquet import FORMAT, _arrow_source
from seqdata.store.formats.parquet_pages import (
    ColumnChunk,
    OtherLayout,
    PageError,
    _Compact,
    parse_page_header,
    value_ranges,
)
from seqdata.store.shards import _counts
from tests.helpers import reseal, rewrite_parquet

SPEC = LagSumSpec(num_sequences=1500, seed=23, chunk_size=512)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("pages")
    for fmt in ("hdf5", "parquet"):
        build_dataset(base / fmt, SPEC, fmt, num_buckets=5, progress=False)
    return base


@pytest.fixture
def pq_copy(built, tmp_path):
    """A copy of the Parquet dataset: files no reader of this process has mapped."""
    path = tmp_path / "parquet"
    shutil.copytree(built / "parquet", path)
    return path


def shard_file(path, index=0):
    return sorted(path.glob("data/shard-*.parquet"))[index]


def assert_same(parts, expected, values=True):
    assert len(parts) == len(expected)
    for a, b in zip(parts, expected, strict=True):
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a.ids, b.ids)
        assert (a.offsets.dtype, a.ids.dtype) == (np.int64, np.int64)
        if values:
            np.testing.assert_array_equal(a.x, b.x)
            np.testing.assert_array_equal(a.y, b.y)
            assert (a.x.dtype, a.y.dtype, a.x.shape) == (np.float32, np.uint8, b.x.shape)
        else:
            assert a.x.shape == (a.num_timesteps, 0)


def layout_of(ds, index):
    """What the page cache holds for shard ``index`` of ``ds``."""
    with open(ds.shard_path(ds.shards[index]), "rb") as f:
        return parquet_read.cached_pages(shard_key(ds, index, f))


def shard_key(ds, index, handle):
    """The page cache's key of shard ``index`` of ``ds``, open as ``handle``."""
    info = ds.shards[index]
    return parquet_read.layout_key(handle, ds.shard_path(info), _counts(info), ds.num_features)


class Decoded(Exception):
    """pyarrow was asked to read a shard."""


def forbid_pyarrow(monkeypatch):
    def refuse(*args, **kwargs):
        raise Decoded("pyarrow read a shard")

    monkeypatch.setattr(pq, "read_table", refuse)
    monkeypatch.setattr(pq, "ParquetFile", refuse)


def rewrite(shard, **options):
    """Rewrite ``shard`` uncompressed and plain, as ours, with ``options`` on top."""
    rewrite_parquet(shard, **{"compression": "none", "use_dictionary": False, **options})


def one_line_error(path, call):
    with pytest.raises(ShardError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and shard_file(path).name in message, message
    return message


# -- Same arrays as pyarrow, pyarrow only once --------------------------------------------

def test_page_reads_give_the_arrays_pyarrow_and_hdf5_give(built):
    pq_ds, h5_ds = open_dataset(built / "parquet"), open_dataset(built / "hdf5")
    buffers = ReadBuffers()
    for i in range(len(pq_ds.shards)):
        expected = h5_ds.read_shard(i)
        assert_same(pq_ds.read_shard(i), expected)  # the first read: pyarrow's decode
        layout = layout_of(pq_ds, i)
        assert sorted(layout) == [b for b, n in enumerate(pq_ds.shards[i].bucket_sequences)
                                  if n]
        assert_same(pq_ds.read_shard(i), expected)  # from the pages
        assert_same(pq_ds.read_shard(i, buffers=buffers), expected)
        picked = [3, 0, 4]
        assert_same(pq_ds.read_shard(i, picked), h5_ds.read_shard(i, picked))
        assert_same(pq_ds.read_shard(i, values=False), h5_ds.read_shard(i, values=False),
                    values=False)
        assert pq_ds.read_shard(i, []) == pq_ds.read_shard(i, [], values=False) == []
    config = BatchConfig(batch_size=16)
    for a, b in zip(pq_ds.batches(config), h5_ds.batches(config), strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.ids, b.ids)


def test_later_reads_do_not_decode_with_pyarrow(pq_copy, built, tmp_path, monkeypatch):
    ds = open_dataset(pq_copy)
    expected = [ds.read_shard(i) for i in range(len(ds.shards))]  # first reads: decoded
    config = BatchConfig(batch_size=32)
    epoch = [b.ids for b in ds.batches(config)]
    forbid_pyarrow(monkeypatch)
    again = open_dataset(pq_copy)  # checks hashes again; the pages are mapped already
    for i in range(len(ds.shards)):
        assert_same(again.read_shard(i), expected[i])
        assert_same(again.read_shard(i, [1]), [expected[i][1]])
        assert_same(again.read_shard(i, values=False), expected[i], values=False)
    for a, b in zip(again.batches(config), epoch, strict=True):
        np.testing.assert_array_equal(a.ids, b)
    fresh = shutil.copytree(built / "parquet", tmp_path / "fresh")
    with pytest.raises(Decoded):  # a file never read before is decoded first
        open_dataset(fresh, check_hashes=False).read_shard(0)


def test_a_lengths_only_first_read_maps_nothing(pq_copy):
    ds = open_dataset(pq_copy, check_hashes=False)
    h5 = [p for p in ds.read_shard(0, values=False)]
    assert layout_of(ds, 0) == {}
    full = ds.read_shard(0)
    assert_same(h5, full, values=False)
    assert len(layout_of(ds, 0)) == sum(n > 0 for n in ds.shards[0].bucket_sequences)


def test_threads_reading_unmapped_shards_at_once_agree(pq_copy, built):
    h5_ds = open_dataset(built / "hdf5")
    expected = [h5_ds.read_shard(i) for i in range(len(h5_ds.shards))]
    datasets = [open_dataset(pq_copy) for _ in range(4)]
    results, errors = {}, []

    def read(k):
        try:
            for _ in range(3):
                for i in range(len(expected)):
                    results[k, i] = datasets[k].read_shard(i)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(len(datasets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (_, i), parts in results.items():
        assert_same(parts, expected[i])


# -- What pyarrow is handed: nothing its threads must release under the GIL ------------------

def test_pyarrow_is_handed_native_sources_holding_no_python_object(pq_copy):
    """A Python file or buffer handed to pyarrow is released by its pool threads after
    read_table returns, under the GIL; at interpreter exit that aborted `seqdata verify`
    (``terminate called without an active exception``, 8% of runs under load)."""
    ds = open_dataset(pq_copy, check_hashes=False)
    path = ds.shard_path(ds.shards[0])
    with open(path, "rb") as handle:
        key = shard_key(ds, 0, handle)
        data = np.fromfile(path, np.uint8)
        before = sys.getrefcount(data)
        source = _arrow_source(handle, path, key, data)
        assert sys.getrefcount(data) == before  # borrowed: no reference for pyarrow to drop
        assert isinstance(source, pa.BufferReader)
        assert source.read_buffer(8).address == data.ctypes.data  # the bytes hashed, uncopied
        reopened = _arrow_source(handle, path, key, None)
        assert isinstance(reopened, pa.OSFile) and not isinstance(reopened, pa.PythonFile)
        assert reopened.read(4) == b"PAR1"
        with pytest.raises(ShardError, match="changed while it was read"):
            _arrow_source(handle, path, key, data[:-1])
        os.replace(shutil.copy(path, path.with_suffix(".new")), path)  # another inode
        message = one_line_error(pq_copy, lambda: _arrow_source(handle, path, key, None))
        assert "changed while it was read" in message


def test_arrays_decoded_from_read_bytes_do_not_alias_them(pq_copy, built):
    """The bytes read for the hash are lent to pyarrow: the arrays decoded from them own
    their memory, so the read buffers can be reused at once."""
    ds, h5_ds = open_dataset(pq_copy, check_hashes=False), open_dataset(built / "hdf5")
    info = ds.shards[1]
    path = ds.shard_path(info)
    data = np.fromfile(path, np.uint8)
    buckets = list(range(len(info.bucket_sequences)))
    parts = FORMAT.read_buckets(path, buckets, _counts(info), ds.num_features, True, data)
    data[:] = 0xFF
    assert_same(parts, h5_ds.read_shard(1))


# -- Other page layouts -------------------------------------------------------------------

def test_many_pages_and_data_page_v2_read_from_the_pages(pq_copy, built):
    h5_ds = open_dataset(built / "hdf5")
    rewrite(shard_file(pq_copy, 0), data_page_size=1024)
    rewrite(shard_file(pq_copy, 1), data_page_size=700, data_page_version="2.0")
    for k in (0, 1):
        reseal(pq_copy, shard_file(pq_copy, k))
    ds = open_dataset(pq_copy)
    for i in (0, 1):
        assert_same(ds.read_shard(i), h5_ds.read_shard(i))
        layout = layout_of(ds, i)
        assert layout and max(len(p.columns["x"].sizes) for p in layout.values()) > 5
        assert_same(ds.read_shard(i), h5_ds.read_shard(i))
        assert_same(ds.read_shard(i, [2, 4]), h5_ds.read_shard(i, [2, 4]))


def flip_v2_compressed(shard):
    """Mark the first x page of a data page v2 shard compressed: pyarrow reads it all the
    same (the column's codec is UNCOMPRESSED), but its bytes are not ours to copy."""
    pf = pq.ParquetFile(shard)
    at = pf.metadata.row_group(0).column(3).data_page_offset
    data = bytearray(shard.read_bytes())
    header = parse_page_header(bytes(data[at:at + 256]))
    assert header.v2_levels is not None and not header.v2_compressed
    for i in range(at, at + header.header_size):
        if data[i] == 0x12:  # field delta 1 (is_compressed follows field 6), false
            data[i] = 0x11
            flipped = parse_page_header(bytes(data[at:at + 256]))
            if flipped.v2_compressed and flipped.size == header.size:
                shard.write_bytes(bytes(data))
                return
            data[i] = 0x12
    raise AssertionError("no is_compressed field found")


def test_a_page_of_another_layout_is_read_by_pyarrow_every_time(pq_copy, built, monkeypatch):
    shard = shard_file(pq_copy)
    rewrite(shard, data_page_version="2.0")
    flip_v2_compressed(shard)
    reseal(pq_copy, shard)
    ds = open_dataset(pq_copy)
    expected = open_dataset(built / "hdf5").read_shard(0)
    assert_same(ds.read_shard(0), expected)
    assert layout_of(ds, 0) is None
    assert_same(ds.read_shard(0), expected)
    forbid_pyarrow(monkeypatch)
    with pytest.raises(Decoded):
        ds.read_shard(0)


# -- Hostile page headers -------------------------------------------------------------------

def zigzag_varint(value, width):
    """``value`` as a zigzag varint of exactly ``width`` bytes (padded: still valid)."""
    raw = (value << 1) ^ (value >> 63)
    assert 0 <= raw < 1 << (7 * width)
    return bytes([(raw >> (7 * i)) & 0x7F | (0x80 if i < width - 1 else 0)
                  for i in range(width)])


def field_spans(buf):
    """Where the varint of each i32 field of a v1 page header lies in ``buf``: (start,
    stop) by field id, the data page header's fields as 50 + id."""
    r = _Compact(buf)
    spans = {}

    def struct(base):
        last = 0
        while (head := r.byte()) & 0x0F:
            kind = head & 0x0F
            last = last + (head >> 4) if head >> 4 else r.zigzag(16)
            if kind == 5:
                start = r.pos
                r.varint()
                spans[base + last] = (start, r.pos)
            elif kind == 12 and (base, last) == (0, 5):
                struct(50)
            else:
                r.skip(kind, 1)

    struct(0)
    return spans


SIZE, STORED, PAGE_TYPE, NUM_VALUES, ENCODING = 2, 3, 1, 51, 52


def set_fields(shard, column, **values):
    """Set i32 fields (by name: ``size=...``) of the first page header of ``column`` in
    row group 0, in place (same byte widths: the file's offsets stay right)."""
    ids = {"size": SIZE, "stored": STORED, "kind": PAGE_TYPE, "num_values": NUM_VALUES,
           "encoding": ENCODING}
    pf = pq.ParquetFile(shard)
    at = pf.metadata.row_group(0).column(column).data_page_offset
    data = bytearray(shard.read_bytes())
    header = parse_page_header(bytes(data[at:at + 256]))
    old = {"size": header.size, "stored": header.compressed_size, "kind": header.kind,
           "num_values": header.num_values, "encoding": header.encoding}
    spans = field_spans(bytes(data[at:at + 256]))
    for name, value in values.items():
        start, stop = spans[ids[name]]
        new = value(old[name]) if callable(value) else value
        data[at + start:at + stop] = zigzag_varint(new, stop - start)
    shard.write_bytes(bytes(data))


def x_chunk(shard, group=0):
    pf = pq.ParquetFile(shard)
    column = pf.metadata.row_group(group).column(3)
    return ColumnChunk(column.data_page_offset, column.total_compressed_size,
                       column.num_values, 2, 2, 4, 4 * column.num_values)


def walk(shard, chunk):
    fd = os.open(shard, os.O_RDONLY)
    try:
        return value_ranges(fd, os.fstat(fd).st_size, chunk)
    finally:
        os.close(fd)


@pytest.mark.parametrize("column, edit, needle", [
    (3, {"size": lambda n: n - 1}, "bytes stored"),  # pyarrow reads it anyway
    (3, {"size": lambda n: n + 1}, "bytes stored"),
    (0, {"num_values": lambda n: n + 1}, "of the chunk's left"),  # and this
])
def test_pages_pyarrow_tolerates_but_our_writer_never_makes_are_refused(
        pq_copy, column, edit, needle):
    shard = shard_file(pq_copy)
    set_fields(shard, column, **edit)
    reseal(pq_copy, shard)
    pq.read_table(shard)  # pyarrow has no objection
    message = one_line_error(pq_copy, lambda: open_dataset(pq_copy).read_shard(0))
    assert needle in message and "row group 0 column" in message, message
    one_line_error(pq_copy, lambda: list(open_dataset(pq_copy).batches(batch_size=8)))


@pytest.mark.parametrize("edit", [
    {"size": 1 << 19, "stored": 1 << 19},  # past the column chunk
    {"stored": lambda n: n - 1},  # compressed size differs
    {"encoding": 5},  # DELTA_BINARY_PACKED
    {"kind": 1},  # an index page
    {"num_values": (1 << 20) - 1},  # far more values than the chunk
])
def test_hostile_page_headers_are_one_line_errors(pq_copy, edit):
    shard = shard_file(pq_copy)
    set_fields(shard, 3, **edit)
    reseal(pq_copy, shard)
    one_line_error(pq_copy, lambda: open_dataset(pq_copy).read_shard(0))
    one_line_error(pq_copy, lambda: open_dataset(pq_copy, check_hashes=False).read_shard(0))


@pytest.mark.parametrize("edit, error, needle", [
    ({"size": 1 << 19, "stored": 1 << 19}, PageError, "runs past its column chunk"),
    ({"stored": lambda n: n - 1}, PageError, "bytes stored"),
    ({"num_values": (1 << 20) - 1}, PageError, "of the chunk's left"),
    ({"encoding": 5}, OtherLayout, "encoding 5"),
    ({"kind": 1}, OtherLayout, "type 1"),
])
def test_the_page_walk_bounds_every_number(pq_copy, edit, error, needle):
    shard = shard_file(pq_copy)
    chunk = x_chunk(shard)
    assert len(walk(shard, chunk)) == 1
    set_fields(shard, 3, **edit)
    with pytest.raises(error, match=needle):
        walk(shard, chunk)


def page_header(size, num_values, encoding=0):
    """A data page v1 header, Thrift compact protocol."""
    def i32(value):
        return bytes([1 << 4 | 5]) + zigzag_varint(value, 1 + (value > 60) * 2)
    return (i32(0) + i32(size) + i32(size) + bytes([2 << 4 | 12]) + i32(num_values)
            + i32(encoding) + i32(3) + i32(3) + b"\0\0")


def test_a_huge_number_of_pages_is_bounded_by_the_chunks_values(tmp_path):
    one = page_header(8, 1) + bytes(8)  # a page of one int64
    path = tmp_path / "pages.bin"
    path.write_bytes(one * 100_000)
    size = len(one) * 100_000
    few = ColumnChunk(0, size, 10, 0, 0, 8, 80)
    with pytest.raises(PageError, match="pages after the chunk's 10 values"):
        walk(path, few)
    assert len(walk(path, ColumnChunk(0, len(one) * 10, 10, 0, 0, 8, 80))) == 10
    with pytest.raises(PageError, match="expected 10 values in 88 bytes"):
        walk(path, ColumnChunk(0, len(one) * 10, 10, 0, 0, 8, 88))
    with pytest.raises(PageError, match=r"of a \d+-byte file"):
        walk(path, ColumnChunk(size - 10, 20, 10, 0, 0, 8, 80))
    path.write_bytes(page_header(8, 0) + bytes(8))
    with pytest.raises(PageError, match="a page of 0 values"):
        walk(path, ColumnChunk(0, len(one), 1, 0, 0, 8, 8))


def test_level_sections_must_lie_inside_their_page(tmp_path):
    body = (4).to_bytes(4, "little") + bytes(4) + (9).to_bytes(4, "little") + bytes(4)
    path = tmp_path / "levels.bin"
    path.write_bytes(page_header(len(body), 1) + body)
    with pytest.raises(PageError, match="level section of 9 bytes"):
        walk(path, ColumnChunk(0, path.stat().st_size, 1, 1, 1, 4, 0))


@pytest.mark.parametrize("buf", [
    b"\x1c" * 5000,  # structs nested without end
    b"\x18" + bytes([0xFF] * 9) + b"\x01",  # a binary of 2**63 bytes
    b"\x19" + bytes([0xFF] * 4) + b"\x0f\x08",  # a list of 2**32 binaries
    b"\x15" + bytes([0xFF] * 11),  # a varint of 11 bytes
    b"\x15\xfe\xff\xff\xff\x1f",  # an i32 beyond 32 bits
    b"\x1d\x00",  # Thrift type 13
    b"\x1b" + bytes([0xFF] * 9) + b"\x01\x11",  # a map of 2**63 booleans
    b"\x19\xf1" + bytes([0xFF] * 4) + b"\x0f",  # a list of 2**32 booleans
])
def test_malformed_headers_are_page_errors_without_hang_or_allocation(tmp_path, buf):
    path = tmp_path / "header.bin"
    path.write_bytes(buf + bytes(64))
    with pytest.raises(PageError):
        walk(path, ColumnChunk(0, len(buf) + 64, 1, 0, 0, 8, 8))


def test_random_damage_to_a_page_header_never_crashes_the_walk(built, tmp_path):
    shard = shutil.copy(shard_file(built / "parquet"), tmp_path / "damaged.parquet")
    chunk = x_chunk(shard)
    data = shard.read_bytes()
    size = parse_page_header(data[chunk.start:chunk.start + 256]).header_size
    rng = np.random.default_rng(5)
    fd = os.open(shard, os.O_RDWR)
    try:
        for _ in range(300):
            broken = bytearray(data[chunk.start:chunk.start + size + 8])
            for at in rng.integers(0, len(broken), int(rng.integers(1, 4))):
                broken[at] = int(rng.integers(256))
            os.pwrite(fd, bytes(broken), chunk.start)
            with contextlib.suppress(PageError, OtherLayout):
                ranges = value_ranges(fd, len(data), chunk)
                assert chunk.start <= ranges[:, 0].min()
                assert (ranges.sum(axis=1) <= chunk.start + chunk.size).all()
    finally:
        os.close(fd)


# -- A file changed without changing its size or mtime ------------------------------------

def test_a_bad_length_column_found_on_a_later_read_is_one_line(pq_copy):
    ds = open_dataset(pq_copy, check_hashes=False)
    ds.read_shard(0)
    layout = layout_of(ds, 0)
    bucket = min(layout)
    shard = shard_file(pq_copy)
    st = shard.stat()
    with open(shard, "r+b") as f:
        f.seek(layout[bucket].columns["length"].offsets[0])
        f.write(np.int32(-5).tobytes())
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same key: not decoded again
    message = one_line_error(pq_copy, lambda: ds.read_shard(0))
    assert "length column adds up" in message


def test_a_length_column_that_disagrees_with_the_lists_is_refused(pq_copy):
    shard = shard_file(pq_copy)
    table = pq.read_table(shard)
    pf = pq.ParquetFile(shard)
    first = pf.metadata.row_group(0).num_rows
    lengths = table.column("length").to_numpy().copy()
    lengths[0] += 1  # one more for one, one less for another: same timesteps
    lengths[first - 1] -= 1
    table = table.set_column(1, table.schema.field("length"), [lengths])
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    with pq.ParquetWriter(shard, table.schema, compression="none",
                          use_dictionary=False) as writer:
        start = 0
        for n in sizes:
            writer.write_table(table.slice(start, n), row_group_size=n)
            start += n
    reseal(pq_copy, shard)
    for check in (True, False):
        ds = open_dataset(pq_copy, check_hashes=check)
        message = one_line_error(pq_copy, lambda: ds.read_shard(0))  # noqa: B023
        assert "length column is not the lengths" in message, message
        assert layout_of(ds, 0) == {}


# -- Runs of timesteps ------------------------------------------------------------------

def random_spans(info, rng, count):
    """``count`` random runs of the shard's non-empty buckets, laid out one after the
    other in the outputs (some empty, some a whole bucket)."""
    buckets = [b for b, n in enumerate(info.bucket_sequences) if n]
    rows, spans = 0, []
    for k in range(count):
        b = int(rng.choice(buckets))
        total = int(info.bucket_timesteps[b])
        start, stop = ((0, total) if k % 7 == 0 else
                       sorted(int(v) for v in rng.integers(0, total + 1, 2)))
        spans.append((b, start, stop, rows))
        rows += stop - start
    return np.array(spans, np.int64).reshape(-1, 4), rows


def read_runs(ds, index, spans, rows):
    x = np.full((rows, ds.num_features), np.nan, np.float32)
    y = np.full(rows, 7, np.uint8)
    assert ds.read_spans(index, spans, x, y)
    return x, y


@pytest.mark.parametrize("page_size", [None, 512])
def test_runs_read_from_the_pages_are_hdf5s(pq_copy, built, page_size):
    """Random runs (within a page, across pages, whole buckets), also of a file not read
    before (its pages are mapped first), equal HDF5's runs."""
    if page_size:
        for k in range(2):
            rewrite(shard_file(pq_copy, k), data_page_size=page_size)
            reseal(pq_copy, shard_file(pq_copy, k))
    pq_ds = open_dataset(pq_copy, check_hashes=False)
    h5_ds = open_dataset(built / "hdf5")
    rng = np.random.default_rng(11)
    for index in range(len(pq_ds.shards)):
        for _ in range(3):
            spans, rows = random_spans(pq_ds.shards[index], rng, 25)
            x, y = read_runs(pq_ds, index, spans, rows)
            hx, hy = read_runs(h5_ds, index, spans, rows)
            np.testing.assert_array_equal(x, hx)
            np.testing.assert_array_equal(y, hy)
        assert len(layout_of(pq_ds, index)) == sum(n > 0 for n in pq_ds.shards[index]
                                                    .bucket_sequences)


def test_runs_of_a_mapped_file_read_no_pyarrow(pq_copy, built, monkeypatch):
    ds = open_dataset(pq_copy)
    ds.check_unchecked()  # as the torch loader does before forking its workers
    forbid_pyarrow(monkeypatch)
    spans, rows = random_spans(ds.shards[1], np.random.default_rng(2), 10)
    x, y = read_runs(ds, 1, spans, rows)
    hx, hy = read_runs(open_dataset(built / "hdf5"), 1, spans, rows)
    np.testing.assert_array_equal(x, hx)
    np.testing.assert_array_equal(y, hy)
    config = BatchConfig(batch_size=8)
    share = list(ds.batches(config, select=lambda k: k % 3 == 1))
    whole = list(open_dataset(built / "hdf5").batches(config))[1::3]
    for a, b in zip(share, whole, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.ids, b.ids)


def test_runs_outside_a_bucket_are_one_line_errors(pq_copy):
    ds = open_dataset(pq_copy)
    info = ds.shards[0]
    bucket = next(b for b, n in enumerate(info.bucket_sequences) if n)
    total = int(info.bucket_timesteps[bucket])
    x, y = np.empty((total + 5, ds.num_features), np.float32), np.empty(total + 5, np.uint8)
    for span in ([bucket, 0, total + 5, 0], [bucket, 3, 2, 0], [bucket, -1, 2, 0],
                 [len(ds.boundaries) + 3, 0, 1, 0]):
        message = one_line_error(pq_copy, lambda s=span: ds.read_spans(0, np.array([s]), x, y))
        assert "asked for" in message
    assert ds.read_spans(0, np.array([[bucket, 0, total, 0]]), x, y)
    np.testing.assert_array_equal(x[:total], ds.read_shard(0, [bucket])[0].x)


def test_a_file_of_another_layout_reads_no_runs(pq_copy):
    shard = shard_file(pq_copy)
    rewrite(shard, data_page_version="2.0")
    flip_v2_compressed(shard)
    reseal(pq_copy, shard)
    ds = open_dataset(pq_copy)
    x, y = np.empty((10, ds.num_features), np.float32), np.empty(10, np.uint8)
    bucket = next(b for b, n in enumerate(ds.shards[0].bucket_sequences) if n)
    assert not ds.read_spans(0, np.array([[bucket, 0, 10, 0]]), x, y)
