"""Groups: batches copied straight from several parts, by runs or by gathers, and the
block shuffle that makes runs long."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdata import open_dataset
from seqdata.read.group import Group, block_order
from seqdata.sequences import Sequences
from tests.helpers import repack_chunked


def make_parts(part_lengths: list[list[int]], features: int = 3) -> list[Sequences]:
    """Parts whose every value says which sequence and step it is (ids 100, 101, ...)."""
    parts, next_id = [], 100
    for lengths in part_lengths:
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        ids = np.arange(next_id, next_id + len(lengths), dtype=np.int64)
        owner = np.repeat(ids, lengths)
        step = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lengths)
        x = (owner[:, None] * 1000 + step[:, None] * 10 + np.arange(features)).astype(np.float32)
        parts.append(Sequences(x, ((owner + step) % 3).astype(np.uint8), offsets, ids))
        next_id += len(lengths)
    return parts


def expected_row(seq_id: int, length: int, width: int, features: int = 3):
    step = np.arange(length)
    x = np.zeros((width, features), np.float32)
    x[:length] = seq_id * 1000 + step[:, None] * 10 + np.arange(features)
    y = np.zeros(width, np.uint8)
    y[:length] = (seq_id + step) % 3
    return x, y


part_lengths = st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=30),
                        min_size=1, max_size=4)


@settings(max_examples=80, deadline=None)
@given(part_lengths=part_lengths, block=st.sampled_from([1, 2, 5, 64]),
       pad_to=st.sampled_from([0, 6, 9]), seed=st.integers(0, 2**16))
def test_pad_copies_each_sequence_from_its_part(part_lengths, block, pad_to, seed):
    parts = make_parts(part_lengths)
    group = Group.of(parts)
    rng = np.random.default_rng(seed)
    rows = block_order(group.sizes, block, rng)
    n = int(rng.integers(1, len(rows) + 1))
    rows = rows[:n]  # a batch: a prefix of the order, as plan_batches cuts them
    lengths = group.lengths[rows]
    batch = group.pad(rows, pad_to)
    assert batch.x.shape == (n, max(int(lengths.max()), pad_to), 3)
    for r in range(n):
        x, y = expected_row(int(batch.ids[r]), int(batch.lengths[r]), batch.x.shape[1])
        np.testing.assert_array_equal(batch.x[r], x)
        np.testing.assert_array_equal(batch.y[r], y)
    np.testing.assert_array_equal(batch.mask.sum(1), batch.lengths)


@settings(max_examples=80, deadline=None)
@given(old=part_lengths, new=part_lengths, block=st.sampled_from([1, 2, 5, 64]),
       seed=st.integers(0, 2**16))
def test_carried_rows_stay_views_of_this_windows_parts_and_pad_as_before(old, new, block,
                                                                           seed):
    """A window's left-over rows are carried as views of its own parts; rows that were
    carried in already are copied (their buffers are reused); the next window's group
    pads them as if they had been copied into one part."""
    rng = np.random.default_rng(seed)
    first = Group.of(make_parts(old))
    rows = block_order(first.sizes, block, rng)[: int(rng.integers(1, len(first) + 1))]
    carry = first.carried(rows)
    np.testing.assert_array_equal(np.sort(carry.ids), np.sort(first.ids[rows]))
    assert carry.sizes == (len(rows),)
    for p in carry.parts:  # nothing copied: every part is one of the window's own
        assert any(p is q for q in first.parts)
    # The next window: the carry, then parts of its own, with ids after the old ones.
    parts = make_parts(new)
    shift = int(first.ids.max()) + 1 - 100
    parts = [type(p)(p.x + shift * 1000, ((p.y + shift) % 3).astype(np.uint8), p.offsets,
                     p.ids + shift) for p in parts]
    group = Group.of([carry, *parts])
    assert group.sizes == (len(carry), *[len(p) for p in parts])
    order = block_order(group.sizes, block, rng)
    batch = group.pad(order)
    for r in range(len(batch)):
        x, y = expected_row(int(batch.ids[r]), int(batch.lengths[r]), batch.x.shape[1])
        np.testing.assert_array_equal(batch.x[r], x)
        np.testing.assert_array_equal(batch.y[r], y)
    # Carried again: rows of the first window's parts are copied, the rest stay views.
    again = group.carried(order[: int(rng.integers(1, len(order) + 1))])
    old_parts = [p for p in again.parts if any(p is q for q in first.parts)]
    assert not old_parts
    copied = [p for p in again.parts if not any(p is q for q in parts)]
    for p in copied:
        assert not any(np.shares_memory(p.x, q.x) for q in first.parts)
    assert np.array_equal(np.sort(again.ids), np.unique(again.ids))  # each row once
    batch = again.pad(np.arange(len(again)))
    for r in range(len(batch)):
        x, y = expected_row(int(batch.ids[r]), int(batch.lengths[r]), batch.x.shape[1])
        np.testing.assert_array_equal(batch.x[r], x)
        np.testing.assert_array_equal(batch.y[r], y)


def test_carried_rows_keep_the_order_a_copy_gave_them():
    """The next window's shuffle sees the carry's rows in the order the copy made
    before carries were views: runs in order, scattered rows by member and length."""
    group = Group.of(make_parts([[3, 1, 2, 3, 1] * 8, [2, 2, 1] * 5]))
    runs = np.arange(4, 30)
    np.testing.assert_array_equal(group.carried(runs).ids, group.ids[runs])
    scattered = np.random.default_rng(1).permutation(len(group))[:20]
    ids = group.carried(scattered).ids
    key = [(int(group.segment[r]), int(group.lengths[r])) for r in scattered]
    expected = [int(group.ids[r]) for _, r in sorted(zip(key, scattered, strict=True),
                                                     key=lambda t: t[0])]
    np.testing.assert_array_equal(ids, expected)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 200), min_size=1, max_size=5),
       block=st.integers(2, 70), seed=st.integers(0, 2**16))
def test_block_order_is_a_permutation_of_runs_within_parts(sizes, block, seed):
    rows = block_order(sizes, block, np.random.default_rng(seed))
    np.testing.assert_array_equal(np.sort(rows), np.arange(sum(sizes)))
    if not len(rows):
        return
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    part = np.searchsorted(np.cumsum(sizes), rows, side="right")
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(part) != 0)) + 1
    # Every run of consecutive rows starts and ends on a block edge: the part's own edges
    # or one phase + k * block per part (runs can be longer: neighbouring blocks may land
    # next to each other by chance).
    firsts = np.concatenate(([0], breaks)).astype(int)
    lasts = np.concatenate((breaks, [len(rows)])).astype(int) - 1
    for p, size in enumerate(sizes):
        edges = [rows[i] - first[p] for i in firsts if part[i] == p]
        edges += [rows[i] + 1 - first[p] for i in lasts if part[i] == p]
        inner = {int(e) % block for e in edges if 0 < e < size}
        assert len(inner) <= 1


def test_block_order_changes_with_the_epoch_and_block_one_is_a_permutation():
    a = block_order([500, 300], 32, np.random.default_rng([0, 0]))
    b = block_order([500, 300], 32, np.random.default_rng([0, 1]))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(block_order([500, 300], 1, np.random.default_rng(4)),
                                  np.random.default_rng(4).permutation(800))


def test_block_and_per_sequence_shuffles_give_the_same_sequences(h5_dataset):
    def content(**kw):
        out = {}
        for batch in h5_dataset.batches(batch_size=16, seed=2, **kw):
            for r in range(len(batch)):
                out[int(batch.ids[r])] = batch.x[r, : batch.lengths[r]].tobytes()
        return out
    blocked, single = content(shuffle_block=8), content(shuffle_block=1)
    assert blocked == single and len(blocked) == h5_dataset.num_sequences


def test_hdf5_shards_rewritten_with_chunked_datasets_still_read(datasets, tmp_path):
    """A shard repacked by another tool (chunked, compressed) is read through h5py."""
    import shutil

    copy = tmp_path / "repacked"
    shutil.copytree(datasets["hdf5"], copy)
    shard = sorted(copy.glob("data/shard-*.h5"))[0]
    repack_chunked(shard)
    original = open_dataset(datasets["hdf5"]).read_shard(0)
    repacked = open_dataset(copy, check_hashes=False).read_shard(0)
    for a, b in zip(original, repacked, strict=True):
        for field in ("x", "y", "offsets", "ids"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_a_rewritten_shard_is_not_read_with_a_stale_layout(datasets, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(datasets["hdf5"], copy)
    ds = open_dataset(copy, check_hashes=False)
    ds.read_shard(0)  # caches the layout of shard 0
    shard = ds.shard_path(ds.shards[0])
    other = ds.shard_path(ds.shards[1])
    shutil.copyfile(other, shard)  # same name, other content and layout
    with pytest.raises(Exception, match="shard-00000"):
        ds.read_shard(0)


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
@pytest.mark.parametrize("keep", [0, 100, 0.5, -1])
def test_truncated_shards_are_errors_even_unhashed(datasets, tmp_path, fmt, keep):
    """Without hash checks, a truncated shard still raises ShardError, never crashes."""
    import shutil

    from seqdata import ShardError

    copy = tmp_path / fmt
    shutil.copytree(datasets[fmt], copy)
    ds = open_dataset(copy, check_hashes=False)
    shard = ds.shard_path(ds.shards[0])
    data = shard.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    shard.write_bytes(data[:size])
    with pytest.raises(ShardError, match="shard-00000"):
        list(ds.batches(batch_size=8))
