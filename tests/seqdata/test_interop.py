"""Readers that know only docs/FORMAT.md (h5py, pandas, pyarrow, DuckDB) see our data."""

import duckdb
import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def test_h5py_alone(h5_dataset):
    flat = h5_dataset.read_all()
    where = {int(i): k for k, i in enumerate(flat.ids)}
    seen = 0
    for shard in sorted(h5_dataset.root.glob("shard-*.h5")):
        with h5py.File(shard) as f:
            assert f.attrs["num_features"] == 5
            for name in f:
                g = f[name]
                off = g["offsets"][()]
                for j, i in enumerate(g["ids"][()]):
                    x, y = flat.sequence(where[int(i)])
                    np.testing.assert_array_equal(g["x"][off[j]:off[j + 1]], x)
                    np.testing.assert_array_equal(g["y"][off[j]:off[j + 1]], y)
                    seen += 1
    assert seen == h5_dataset.num_sequences


def test_pandas_and_pyarrow_alone(pq_dataset):
    flat = pq_dataset.read_all()
    where = {int(i): k for k, i in enumerate(flat.ids)}
    df = pd.concat([pd.read_parquet(p) for p in sorted(pq_dataset.root.glob("*.parquet"))])
    assert list(df.columns) == ["id", "length", "bucket", "x", "y"]
    assert len(df) == pq_dataset.num_sequences
    for row in df.sample(40, random_state=0).itertuples():
        x, y = flat.sequence(where[row.id])
        np.testing.assert_array_equal(np.stack(row.x), x)
        np.testing.assert_array_equal(row.y, y)
        assert row.length == len(x)
    first = pq.ParquetFile(next(pq_dataset.root.glob("*.parquet")))
    buckets = [first.read_row_group(i, columns=["bucket"]).column(0).to_pylist()
               for i in range(first.num_row_groups)]
    assert all(len(set(b)) == 1 for b in buckets)
    assert [b[0] for b in buckets] == sorted(b[0] for b in buckets)


def test_duckdb_alone(pq_dataset):
    glob = str(pq_dataset.root / "*.parquet")
    rows = duckdb.sql(f"SELECT bucket, count(*), sum(length) FROM '{glob}' "
                      f"GROUP BY bucket ORDER BY bucket").fetchall()
    present = [b for b, n in enumerate(pq_dataset.bucket_sequences) if n]
    assert [r[0] for r in rows] == present
    assert [r[1] for r in rows] == [int(pq_dataset.bucket_sequences[b]) for b in present]
    assert [r[2] for r in rows] == [int(pq_dataset.bucket_timesteps[b]) for b in present]
    labels = duckdb.sql(f"SELECT unnest(y) FROM '{glob}' WHERE id = 42").fetchnumpy()
    flat = pq_dataset.read_all()
    k = int(np.flatnonzero(flat.ids == 42)[0])
    np.testing.assert_array_equal(next(iter(labels.values())), flat.sequence(k)[1])


def test_pytorch_alone(h5_dataset):
    """docs/FORMAT.md's PyTorch snippet: h5py + torch, no seqdata."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    flat = h5_dataset.read_all()
    where = {int(i): k for k, i in enumerate(flat.ids)}
    shard = sorted(h5_dataset.root.glob("shard-*.h5"))[0]
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
