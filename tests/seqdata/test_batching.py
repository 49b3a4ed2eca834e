"""Batch invariants: nothing lost or duplicated, masks, zero padding, determinism, budgets."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdata import BatchConfig, SpecError, open_dataset
from seqdata.read.batch import new_batch
from seqdata.read.group import Group
from seqdata.sequences import Sequences

MODES = [
    dict(mode="bucketed", batch_size=16),
    dict(mode="bucketed", batch_size=7, pad_to_bucket=True),
    dict(mode="bucketed", max_timesteps=600),
    dict(mode="bucketed", max_timesteps=800, pad_to_bucket=True),
    dict(mode="bucketed", batch_size=5, same_length=True),
    dict(mode="padded", batch_size=32),
    dict(mode="padded", max_timesteps=1000),
]


def collect(ds, **kw):
    return list(ds.batches(**kw))


def check_batch(batch, ds):
    b, length = batch.mask.shape
    assert batch.x.shape == (b, length, ds.num_features) and batch.x.dtype == np.float32
    assert batch.y.shape == (b, length) and batch.y.dtype == np.uint8
    assert batch.mask.dtype == bool and batch.lengths.shape == batch.ids.shape == (b,)
    np.testing.assert_array_equal(batch.mask.sum(axis=1), batch.lengths)
    # right-padded: the mask is a prefix of each row
    np.testing.assert_array_equal(batch.mask, np.arange(length) < batch.lengths[:, None])
    assert not batch.x[~batch.mask].any() and not batch.y[~batch.mask].any()


@pytest.mark.parametrize("kw", MODES, ids=str)
def test_every_sequence_once_with_its_own_content(h5_dataset, kw):
    ds = h5_dataset
    flat = ds.read_all()
    where = {int(i): k for k, i in enumerate(flat.ids)}
    batches = collect(ds, **kw, seed=1, epoch=2)
    assert len(batches) == ds.num_batches(**kw, seed=1, epoch=2)
    ids = np.concatenate([b.ids for b in batches])
    np.testing.assert_array_equal(np.sort(ids), np.arange(ds.num_sequences))
    for batch in batches:
        check_batch(batch, ds)
        for row in range(0, len(batch), 3):
            x, y = flat.sequence(where[int(batch.ids[row])])
            np.testing.assert_array_equal(batch.x[row, : len(x)], x)
            np.testing.assert_array_equal(batch.y[row, : len(y)], y)


@pytest.mark.parametrize("kw", MODES, ids=str)
def test_same_seed_same_batches_from_either_format(h5_dataset, pq_dataset, kw):
    a = collect(h5_dataset, **kw, seed=5, epoch=1)
    b = collect(pq_dataset, **kw, seed=5, epoch=1)
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        for field in ("x", "y", "mask", "lengths", "ids"):
            np.testing.assert_array_equal(getattr(p, field), getattr(q, field))


def test_epochs_and_seeds_shuffle_differently(h5_dataset):
    def order(**kw):
        return np.concatenate([b.ids for b in h5_dataset.batches(batch_size=16, **kw)])
    base = order(seed=0, epoch=0)
    assert not np.array_equal(base, order(seed=0, epoch=1))
    assert not np.array_equal(base, order(seed=1, epoch=0))
    np.testing.assert_array_equal(base, order(seed=0, epoch=0))


def test_bucketed_batches_stay_in_one_bucket(h5_dataset):
    ds = h5_dataset
    bounds = np.array(ds.boundaries)
    for batch in ds.batches(batch_size=16):
        buckets = np.searchsorted(bounds, batch.lengths)
        assert len(set(buckets)) == 1
        assert batch.x.shape[1] == batch.lengths.max()
    for batch in ds.batches(batch_size=16, pad_to_bucket=True):
        assert batch.x.shape[1] == bounds[np.searchsorted(bounds, batch.lengths[0])]
    for batch in ds.batches(batch_size=16, same_length=True):
        assert len(set(batch.lengths)) == 1


def test_only_the_last_batch_of_each_group_is_short(h5_dataset):
    ds = h5_dataset
    sizes = [len(b) for b in ds.batches(batch_size=16)]
    short = [s for s in sizes if s < 16]
    assert len(short) <= len(ds.boundaries)
    dropped = list(ds.batches(batch_size=16, drop_remainder=True))
    assert all(len(b) == 16 for b in dropped)
    assert sum(len(b) for b in dropped) == sum(sizes) - sum(short)
    padded = [len(b) for b in ds.batches(mode="padded", batch_size=32)]
    assert padded.count(32) == len(padded) - 1 and sum(padded) == ds.num_sequences


@pytest.mark.parametrize("kw", [dict(max_timesteps=600), dict(max_timesteps=1000, mode="padded"),
                                dict(max_timesteps=700, pad_to_bucket=True)], ids=str)
def test_budget_is_respected_and_used(h5_dataset, kw):
    batches = collect(h5_dataset, **kw)
    assert all(b.mask.size <= kw["max_timesteps"] for b in batches)
    assert np.mean([b.mask.size for b in batches]) > 0.6 * kw["max_timesteps"]


def test_padding_is_small_in_bucketed_mode_and_large_in_padded_mode(h5_dataset):
    def padding(**kw):
        bs = collect(h5_dataset, **kw)
        return 1 - sum(b.num_timesteps for b in bs) / sum(b.mask.size for b in bs)
    bucketed = padding(batch_size=16)
    assert bucketed <= padding(batch_size=16, pad_to_bucket=True)
    assert padding(batch_size=16, same_length=True) == 0
    assert padding(mode="padded", batch_size=32) > 3 * bucketed


def test_start_skips_batches_exactly(h5_dataset):
    full = collect(h5_dataset, batch_size=16, seed=3)
    rest = collect(h5_dataset, batch_size=16, seed=3, start=5)
    assert len(rest) == len(full) - 5
    for p, q in zip(full[5:], rest, strict=True):
        np.testing.assert_array_equal(p.ids, q.ids)


@pytest.mark.parametrize("read_ahead", [False, True])
def test_window_size_bounds_what_is_read(h5_dataset, monkeypatch, read_ahead):
    reads = []
    original = type(h5_dataset).read_shard

    def spy(self, index, buckets=None, values=True, buffers=None):
        reads.append(index)
        return original(self, index, buckets, values, buffers)

    monkeypatch.setattr(type(h5_dataset), "read_shard", spy)
    iterator = h5_dataset.batches(batch_size=16, window_shards=2, read_ahead=read_ahead)
    next(iterator)
    # the first window was read to yield the first batch; with read-ahead, the second too
    assert len(reads) == 2 or (read_ahead and len(reads) <= 4)
    list(iterator)
    assert sorted(reads) == list(range(len(h5_dataset.shards)))


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_read_ahead_and_buffer_reuse_change_nothing(datasets, fmt):
    """Batches stay right although later windows reuse the buffers of earlier ones."""
    ds = open_dataset(datasets[fmt])
    flat = ds.read_all()
    where = {int(i): k for k, i in enumerate(flat.ids)}
    kw = dict(batch_size=8, window_shards=1, seed=4)
    ahead = list(ds.batches(**kw))
    plain = list(ds.batches(**kw, read_ahead=False))
    assert len(ahead) == len(plain)
    for p, q in zip(ahead, plain, strict=True):
        np.testing.assert_array_equal(p.x, q.x)
        np.testing.assert_array_equal(p.ids, q.ids)
        for r in range(len(p)):
            np.testing.assert_array_equal(p.x[r, : p.lengths[r]],
                                          flat.sequence(where[int(p.ids[r])])[0])


@pytest.mark.parametrize("read_ahead", [True, False])
def test_carried_rows_stay_right_across_windows_and_epochs_of_a_stream(datasets, read_ahead):
    """Rows carried over are views of their window's buffers, which later windows (and
    the next epochs, in a stream) read into again: every row of several streamed epochs
    of one-shard windows still holds its own sequence."""
    from seqdata import BatchStream

    ds = open_dataset(datasets["hdf5"])
    flat = ds.read_all()
    where = {int(i): k for k, i in enumerate(flat.ids)}
    config = BatchConfig(batch_size=7, window_shards=1, seed=6, read_ahead=read_ahead)
    size = ds.num_batches(config)
    seen = 0
    stream = iter(BatchStream(ds, config))
    for _ in range(3 * size):
        batch = next(stream)
        for r in range(len(batch)):
            x, y = flat.sequence(where[int(batch.ids[r])])
            np.testing.assert_array_equal(batch.x[r, : len(x)], x)
            np.testing.assert_array_equal(batch.y[r, : len(y)], y)
        seen += len(batch)
    stream.close()
    assert seen == 3 * ds.num_sequences


def test_later_epochs_read_into_the_first_epochs_buffers(datasets, monkeypatch):
    """Fresh memory costs a page fault per page: a dataset keeps its reader's buffers
    from one epoch to the next, and still pickles (a loader's spawned workers)."""
    import pickle

    from seqdata.store.buffers import ReadBuffers

    ds = open_dataset(datasets["hdf5"])
    used: set[int] = set()
    get = ReadBuffers.get

    def recording(self, size):
        buffer = get(self, size)
        used.add(id(buffer.base))  # the whole allocation the buffer is a slice of
        return buffer
    monkeypatch.setattr(ReadBuffers, "get", recording)
    for read_ahead in (True, False):
        used.clear()
        list(ds.batches(batch_size=8, window_shards=1, read_ahead=read_ahead))
        first = set(used)
        list(ds.batches(batch_size=8, window_shards=1, epoch=1, read_ahead=read_ahead))
        # A buffer is made again only where a set meets a larger shard than it held.
        assert len(first) >= 2 and len(used - first) <= 1
    clone = pickle.loads(pickle.dumps(ds))
    assert [b.ids.tolist() for b in clone.batches(batch_size=8)] == \
        [b.ids.tolist() for b in ds.batches(batch_size=8)]


def test_batch_memory_is_reused_only_once_nothing_holds_it(datasets):
    """`BatchArena` (the default memory of `Dataset.batches`) gives a dropped batch's
    memory to a later batch, never the memory of a batch, or of any view of one, still
    held: what a consumer keeps keeps its values."""
    from seqdata.read.batch import BatchArena

    def address(a):
        return a.__array_interface__["data"][0]

    arena = BatchArena(keep=4)
    first = arena(6, 5, 3)
    where = address(first.x)
    del first
    assert address(arena(6, 5, 3).x) == where  # dropped: reused
    held = arena(6, 5, 3)
    view = held.y[:, :2]
    del held
    assert address(arena(6, 5, 3).y) != address(view)  # a view still holds it
    ds = open_dataset(datasets["hdf5"])
    expected = list(ds.batches(batch_size=8, seed=2, memory=new_batch))
    kept, addresses = {}, set()
    for k, batch in enumerate(ds.batches(batch_size=8, seed=2)):
        addresses.add(address(batch.x))
        if k % 3 == 0:
            kept[k] = batch.x[:, 1:], batch.mask.view(np.uint8)  # views only
    assert len(addresses) < len(expected) // 2  # memory went round
    for k, (x, mask) in kept.items():
        np.testing.assert_array_equal(x, expected[k].x[:, 1:])
        np.testing.assert_array_equal(mask, expected[k].mask.view(np.uint8))


def test_an_epoch_abandoned_early_stops_its_reader(h5_dataset):
    import threading

    iterator = h5_dataset.batches(batch_size=8, window_shards=1)
    next(iterator)
    iterator.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("seqdata-read-ahead")]


@pytest.mark.parametrize("kw, match", [
    (dict(mode="sorted"), "mode must be one of bucketed, padded"),
    (dict(batch_size=8, max_timesteps=100), "not both"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(max_timesteps=-1), "max_timesteps must be an integer >= 1"),
    (dict(epoch=-1), "epoch must be an integer >= 0"),
    (dict(mode="padded", same_length=True), "bucketed mode only"),
])
def test_bad_batch_options(kw, match):
    with pytest.raises(SpecError, match=match):
        BatchConfig(**kw)


def test_a_budget_below_the_longest_sequence_is_refused(h5_dataset):
    with pytest.raises(SpecError, match="max_timesteps must be >= 99"):
        next(h5_dataset.batches(max_timesteps=50))


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=20), data=st.data())
def test_pad_places_each_sequence_at_the_start_of_its_row(lengths, data):
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    total = int(offsets[-1])
    seqs = Sequences(np.arange(total * 3, dtype=np.float32).reshape(total, 3) + 1,
                     (np.arange(total) % 2).astype(np.uint8), offsets,
                     np.arange(len(lengths), dtype=np.int64) * 10)
    rows = np.array(data.draw(st.permutations(range(len(lengths)))))
    pad_to = data.draw(st.sampled_from([0, 12, 15]))
    batch = Group.of([seqs]).pad(rows, pad_to)
    assert batch.x.shape[1] == max(max(lengths), pad_to)
    for r, i in enumerate(rows):
        x, y = seqs.sequence(i)
        np.testing.assert_array_equal(batch.x[r, : len(x)], x)
        np.testing.assert_array_equal(batch.y[r, : len(y)], y)
        assert not batch.x[r, len(x):].any() and not batch.mask[r, len(x):].any()
    np.testing.assert_array_equal(batch.ids, rows * 10)
