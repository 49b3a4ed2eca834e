"""A share of an epoch (`Dataset.batches(select=...)`): planned over locations, padded
from just its own rows (`seqdata.read.located`), equal to the full epoch's batches."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import numpy as np
import pytest

from seqdata import BatchConfig, ShardError, build_dataset, open_dataset
from seqdata.read.located import SHARD_SHIFT, Locator
from tests.helpers import SMALL_SPEC, repack_chunked

CONFIGS = {
    "bucketed count": BatchConfig(batch_size=24, seed=5),
    "bucketed budget": BatchConfig(max_timesteps=700, seed=6, epoch=3),
    "padded": BatchConfig("padded", batch_size=40, seed=7),
    "static shapes": BatchConfig(batch_size=24, seed=8, static_shapes=True),
    "same length, per-sequence shuffle": BatchConfig(batch_size=8, same_length=True,
                                                     shuffle_block=1, seed=9),
    "window of 1, no shuffle": BatchConfig(batch_size=16, window_shards=1, shuffle=False),
    "from batch 5": BatchConfig(max_timesteps=900, seed=10, start=5),
}
FIELDS = ("x", "y", "mask", "lengths", "ids")


def assert_same(got, expected) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_each_share_holds_exactly_its_batches_of_the_epoch(datasets, fmt, case):
    ds = open_dataset(datasets[fmt])
    config = CONFIGS[case]
    full = list(ds.batches(config))
    assert len(full) > 6
    for workers in (2, 3):
        for k in range(workers):
            share = list(ds.batches(config, select=lambda i, k=k, w=workers:
                                    (i - config.start) % w == k))
            assert_same(share, full[k::workers])


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_a_share_reads_only_its_own_rows(datasets, monkeypatch, fmt):
    """No whole shard is read: lengths and ids, then exactly the timesteps of the
    selected batches, each once (HDF5 datasets and Parquet pages alike)."""
    ds = open_dataset(datasets[fmt])
    ds.check_unchecked()
    config = CONFIGS["bucketed budget"]
    whole_reads, read_steps = [], []
    read_shard, read_spans = ds.read_shard, ds.read_spans

    def counting_shard(index, buckets=None, values=True, buffers=None):
        if values:
            whole_reads.append(index)
        return read_shard(index, buckets, values, buffers)

    def counting_spans(index, spans, x_out, y_out):
        read_steps.append(int((spans[:, 2] - spans[:, 1]).sum()))
        assert read_spans(index, spans, x_out, y_out)
        return True

    monkeypatch.setattr(ds, "read_shard", counting_shard)
    monkeypatch.setattr(ds, "read_spans", counting_spans)
    share = list(ds.batches(config, select=lambda i: i % 2 == 1))
    assert not whole_reads
    assert sum(read_steps) == sum(int(b.lengths.sum()) for b in share)
    assert 0 < sum(read_steps) < ds.num_timesteps * 0.75


def count_meta_reads(ds, monkeypatch) -> list[int]:
    """The shards whose lengths and ids ``ds`` reads from now on, appended as it does."""
    meta_reads = []
    read_shard = ds.read_shard

    def counting(index, buckets=None, values=True, buffers=None):
        if not values:
            meta_reads.append(index)
        return read_shard(index, buckets, values, buffers)

    monkeypatch.setattr(ds, "read_shard", counting)
    return meta_reads


def replace_damaged(shard) -> None:
    """Replace ``shard`` by a new file with one byte flipped."""
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    os.unlink(shard)
    shard.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    """19 shards of 16 sequences: a window of one shard carries rows for many windows."""
    path = tmp_path_factory.mktemp("many") / "hdf5"
    build_dataset(path, replace(SMALL_SPEC, chunk_size=16), "hdf5", progress=False)
    return path


@pytest.mark.parametrize("keep", ["default", "one shard"])
def test_a_share_reads_each_shards_lengths_once_unless_told_to_keep_less(
        many_shards, monkeypatch, keep):
    """Rows carried from shards read long before come back in later batches: by default a
    share keeps every shard's lengths and ids it read (up to `LOCATED_ROWS` rows) and
    reads each once; told to keep one shard, it reads them again, with the same batches."""
    import seqdata.read.dataset

    ds = open_dataset(many_shards)
    config = BatchConfig(batch_size=16, window_shards=1, seed=3)
    full = list(ds.batches(config))
    if keep == "one shard":
        class OneShard(Locator):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **{**kwargs, "keep_rows": 1})
        monkeypatch.setattr(seqdata.read.dataset, "Locator", OneShard)
    meta_reads = count_meta_reads(ds, monkeypatch)
    share = list(ds.batches(config, select=lambda i: i % 2 == 0))
    assert_same(share, full[0::2])
    if keep == "default":
        assert sorted(meta_reads) == list(range(len(ds.shards)))
    else:
        assert len(meta_reads) > len(ds.shards)


def test_later_epochs_of_a_share_plan_from_the_lengths_read_once(many_shards, tmp_path,
                                                               monkeypatch):
    """A dataset keeps its share's locator between epochs (a persistent loader worker):
    later epochs read no shard's lengths again and hold exactly their batches, in
    another config too; a shard replaced between epochs is refused all the same."""
    copy = tmp_path / "copy"
    shutil.copytree(many_shards, copy)
    ds = open_dataset(copy)
    meta_reads = count_meta_reads(ds, monkeypatch)
    for epoch in range(3):
        config = BatchConfig(batch_size=16, window_shards=1, seed=3, epoch=epoch)
        assert_same(list(ds.batches(config, select=lambda i: i % 3 == 1)),
                    list(ds.batches(config))[1::3])
    assert sorted(meta_reads) == list(range(len(ds.shards)))  # the first epoch's only
    padded = BatchConfig("padded", batch_size=10, window_shards=2, seed=4)
    assert_same(list(ds.batches(padded, select=lambda i: i % 2 == 0)),
                list(ds.batches(padded))[::2])
    shard = ds.shard_path(ds.shards[0])
    replace_damaged(shard)
    with pytest.raises(ShardError, match="SHA-256"):
        list(ds.batches(padded, select=lambda i: True))


def test_locations_carry_shard_and_row(h5_dataset):
    """The planner sees ids replaced by locations: shard << 32 | row in the shard."""
    locator = Locator(lambda i: h5_dataset.read_shard(i, values=False), h5_dataset.read_spans,
                      h5_dataset.read_shard, h5_dataset.num_features, 2, 2)
    for shard in (0, len(h5_dataset.shards) - 1):
        parts = locator.load(shard)
        where = np.concatenate([p.ids for p in parts])
        np.testing.assert_array_equal(where >> SHARD_SHIFT, shard)
        np.testing.assert_array_equal(where & ((1 << SHARD_SHIFT) - 1), np.arange(len(where)))
        lengths = [p.lengths for p in h5_dataset.read_shard(shard, values=False)]
        np.testing.assert_array_equal(np.concatenate([p.lengths for p in parts]),
                                      np.concatenate(lengths))


def test_chunked_hdf5_shards_fall_back_to_whole_shards(datasets, tmp_path):
    """A shard rewritten by another tool (chunked, compressed: no byte ranges) is decoded
    whole for the share, with the same batches."""
    copy = tmp_path / "repacked"
    shutil.copytree(datasets["hdf5"], copy)
    shard = sorted(copy.glob("data/shard-*.h5"))[1]
    repack_chunked(shard)
    ds = open_dataset(copy, check_hashes=False)
    config = CONFIGS["bucketed count"]
    assert_same(list(ds.batches(config, select=lambda i: i % 2 == 0)),
                list(open_dataset(datasets["hdf5"]).batches(config))[::2])


def test_a_shard_replaced_under_a_share_is_refused(datasets, tmp_path):
    """The share checks each shard's file before reading its rows, as every read does."""
    copy = tmp_path / "copy"
    shutil.copytree(datasets["hdf5"], copy)
    ds = open_dataset(copy)
    ds.check_unchecked()
    shard = ds.shard_path(ds.shards[0])
    replace_damaged(shard)
    with pytest.raises(ShardError, match="SHA-256"):
        list(ds.batches(CONFIGS["padded"], select=lambda i: True))


def test_a_span_outside_its_bucket_is_a_shard_error(h5_dataset):
    bucket = next(b for b, n in enumerate(h5_dataset.shards[0].bucket_sequences) if n)
    total = int(h5_dataset.shards[0].bucket_timesteps[bucket])
    x = np.empty((total + 5, h5_dataset.num_features), np.float32)
    y = np.empty(total + 5, np.uint8)
    with pytest.raises(ShardError, match="asked for"):
        h5_dataset.read_spans(0, np.array([[bucket, 0, total + 5, 0]]), x, y)
    assert h5_dataset.read_spans(0, np.array([[bucket, 0, total, 0]]), x, y)
    whole = h5_dataset.read_shard(0, [bucket])[0]
    np.testing.assert_array_equal(x[:total], whole.x)
    with pytest.raises(ValueError, match="past the outputs"):  # the caller's mistake
        h5_dataset.read_spans(0, np.array([[bucket, 0, total, 6]]), x, y)
