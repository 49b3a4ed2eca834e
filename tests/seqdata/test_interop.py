"""Readers that know only docs/FORMAT.md see our data: h5py, and for Parquet datasets the
directory-level reads of ``DIR/data`` in pandas, pyarrow, polars and DuckDB, and Hugging
Face ``datasets.load_dataset(DIR)`` through the card's configs. Each compares real content
with ``seqdata.open_dataset(DIR).read_all()``."""

import itertools

import duckdb
import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest


def by_id(ds):
    """id -> (x, y) of every sequence of an open dataset."""
    flat = ds.read_all()
    return {int(i): flat.sequence(k) for k, i in enumerate(flat.ids)}


def assert_rows(ids, xs, ys, expected):
    """Every row (id, x (L, F), y (L,)) holds the sequence ``expected`` has for its id,
    and every sequence comes once."""
    assert sorted(int(i) for i in ids) == sorted(expected)
    for i, x, y in zip(ids, xs, ys, strict=True):
        want_x, want_y = expected[int(i)]
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)


def test_h5py_alone(h5_dataset):
    flat = h5_dataset.read_all()
    where = {int(i): k for k, i in enumerate(flat.ids)}
    seen = 0
    shards = sorted((h5_dataset.root / "data").iterdir())
    assert [p.name for p in shards] == [f"shard-{c:05d}.h5" for c in range(len(shards))]
    for shard in shards:
        with h5py.File(shard) as f:
            assert f.attrs["num_features"] == 5
            for name in f:
                g = f[name]
                assert (g["x"].dtype, g["y"].dtype, g["offsets"].dtype, g["ids"].dtype) == (
                    np.float32, np.uint8, np.int64, np.int64)
                off = g["offsets"][()]
                for j, i in enumerate(g["ids"][()]):
                    x, y = flat.sequence(where[int(i)])
                    np.testing.assert_array_equal(g["x"][off[j]:off[j + 1]], x)
                    np.testing.assert_array_equal(g["y"][off[j]:off[j + 1]], y)
                    seen += 1
    assert seen == h5_dataset.num_sequences


def test_pandas_reads_the_data_directory(pq_dataset):
    df = pd.read_parquet(pq_dataset.root / "data")
    assert list(df.columns) == ["id", "length", "bucket", "x", "y"]
    assert [str(t) for t in df.dtypes] == ["int64", "int32", "int32", "object", "object"]
    assert len(df) == pq_dataset.num_sequences
    xs = [np.stack(v) for v in df.x]
    assert {x.dtype for x in xs} == {np.dtype(np.float32)}
    assert {v.dtype for v in df.y} == {np.dtype(np.uint8)}
    assert_rows(df.id, xs, df.y, by_id(pq_dataset))
    assert (df.length.to_numpy() == [len(x) for x in xs]).all()
    # one row group per non-empty bucket, ascending, as documented
    first = pq.ParquetFile(pq_dataset.root / "data" / "shard-00000.parquet")
    buckets = [first.read_row_group(i, columns=["bucket"]).column(0).to_pylist()
               for i in range(first.num_row_groups)]
    assert all(len(set(b)) == 1 for b in buckets)
    assert [b[0] for b in buckets] == sorted(b[0] for b in buckets)


def documented_schema(num_features: int) -> pa.Schema:
    """docs/FORMAT.md's Parquet schema: every column and nested level not null."""
    step = pa.list_(pa.field("item", pa.float32(), nullable=False), num_features)
    return pa.schema([
        pa.field("id", pa.int64(), nullable=False),
        pa.field("length", pa.int32(), nullable=False),
        pa.field("bucket", pa.int32(), nullable=False),
        pa.field("x", pa.list_(pa.field("item", step, nullable=False)), nullable=False),
        pa.field("y", pa.list_(pa.field("item", pa.uint8(), nullable=False)), nullable=False),
    ])


def table_rows(table: pa.Table, num_features: int):
    """(ids, xs, ys) of a table of the documented schema, through arrow's own buffers."""
    x = table.column("x").combine_chunks()
    y = table.column("y").combine_chunks()
    values = x.flatten().flatten().to_numpy().reshape(-1, num_features)
    labels = y.flatten().to_numpy()
    starts = x.offsets.to_numpy()
    assert (starts == y.offsets.to_numpy()).all()
    xs = [values[a:b] for a, b in itertools.pairwise(starts)]
    ys = [labels[a:b] for a, b in itertools.pairwise(starts)]
    return table.column("id").to_numpy(), xs, ys


def test_pyarrow_reads_the_data_directory(pq_dataset):
    f = pq_dataset.num_features
    table = pq.read_table(pq_dataset.root / "data")
    assert table.schema.remove_metadata() == documented_schema(f)
    assert table.num_rows == pq_dataset.num_sequences
    assert_rows(*table_rows(table, f), by_id(pq_dataset))
    dataset = pads.dataset(pq_dataset.root / "data")
    assert dataset.count_rows() == pq_dataset.num_sequences
    assert len(dataset.files) == len(pq_dataset.shards)
    long = dataset.to_table(filter=pads.field("length") > 50)
    lengths = pq_dataset.read_all().lengths
    assert long.num_rows == int((lengths > 50).sum())
    expected = by_id(pq_dataset)
    assert_rows(*table_rows(long, f), {i: expected[i] for i in long.column("id").to_pylist()})


def test_polars_reads_the_data_directory(pq_dataset):
    """polars takes the directory itself (a glob ``data/*.parquet`` works as well)."""
    import polars as pl

    df = pl.read_parquet(pq_dataset.root / "data")
    glob = pl.read_parquet(str(pq_dataset.root / "data" / "*.parquet"))
    assert df.equals(glob)
    f = pq_dataset.num_features
    assert df.schema == pl.Schema({"id": pl.Int64, "length": pl.Int32, "bucket": pl.Int32,
                                   "x": pl.List(pl.Array(pl.Float32, f)),
                                   "y": pl.List(pl.UInt8)})
    assert_rows(*table_rows(df.to_arrow(), f), by_id(pq_dataset))


def test_duckdb_counts_per_length_and_bucket_are_the_manifests(pq_dataset):
    m = pq_dataset.manifest
    files = f"'{pq_dataset.root / 'data' / '*.parquet'}'"
    rows = duckdb.sql(f"SELECT length, count(*) FROM {files} GROUP BY length "
                      f"ORDER BY length").fetchall()
    low = m.spec.lengths.low
    assert rows == [(low + k, n) for k, n in enumerate(m.length_counts) if n]
    rows = duckdb.sql(f"SELECT bucket, count(*), sum(length) FROM {files} "
                      f"GROUP BY bucket ORDER BY bucket").fetchall()
    present = [b for b, n in enumerate(m.bucket_sequences) if n]
    assert rows == [(b, int(m.bucket_sequences[b]), int(m.bucket_timesteps[b]))
                    for b in present]
    # read_parquet takes a glob without a suffix too: every file in data/ is a shard
    every = f"read_parquet('{pq_dataset.root / 'data' / '*'}')"
    assert duckdb.sql(f"SELECT count(*) FROM {every}").fetchall() == [(m.num_sequences,)]
    flat = pq_dataset.read_all()
    for i in (0, 42, m.num_sequences - 1):
        labels = duckdb.sql(f"SELECT unnest(y) FROM {files} WHERE id = {i}").fetchnumpy()
        k = int(np.flatnonzero(flat.ids == i)[0])
        np.testing.assert_array_equal(next(iter(labels.values())), flat.sequence(k)[1])


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return str(tmp_path / "hf-cache")


def test_hugging_face_loads_the_dataset_directory(pq_dataset, hf_cache):
    """The card's configs make ``load_dataset(DIR)`` read data/*.parquet as one split."""
    from datasets import List, Value, load_dataset

    rows = load_dataset(str(pq_dataset.root), split="train", cache_dir=hf_cache)
    assert rows.num_rows == pq_dataset.num_sequences
    assert rows.features["id"] == Value("int64") and rows.features["y"] == List(Value("uint8"))
    assert rows.features["x"] == List(List(Value("float32"), length=pq_dataset.num_features))
    numpy = rows.with_format("numpy")
    assert_rows(numpy["id"], [np.stack(x) for x in numpy["x"]], numpy["y"], by_id(pq_dataset))
    # the packaged Parquet builder over data/ gives the same rows
    plain = load_dataset("parquet", data_dir=str(pq_dataset.root / "data"), split="train",
                         cache_dir=hf_cache)
    assert plain.num_rows == rows.num_rows and plain["id"] == rows["id"]


def test_pytorch_alone(h5_dataset):
    """docs/FORMAT.md's PyTorch snippet: h5py + torch, no seqdata."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    flat = h5_dataset.read_all()
    where = {int(i): k for k, i in enumerate(flat.ids)}
    shard = h5_dataset.root / "data" / "shard-00000.h5"
    with h5py.File(shard) as f:
        name = sorted(f)[-1]
        off, x = f[name]["offsets"][()], torch.from_numpy(f[name]["x"][()])
        ids = f[name]["ids"][()]
    seqs = torch.tensor_split(x, torch.from_numpy(off[1:-1]))
    batch = pad_sequence(seqs, batch_first=True)
    mask = torch.arange(batch.shape[1]) < torch.from_numpy(np.diff(off))[:, None]
    assert batch.shape == (len(ids), int(np.diff(off).max()), 5)
    for row, i in enumerate(ids):
        expected, _ = flat.sequence(where[int(i)])
        np.testing.assert_array_equal(batch[row][mask[row]].numpy(), expected)
        assert not batch[row][~mask[row]].any()
