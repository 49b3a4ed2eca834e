"""The numbered stream of epochs every bridge consumes: order, resume position, stats."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from seqdata import BatchConfig, BatchStream
from seqdata.errors import ShardError
from seqdata.read.batching import WindowReader


def epoch_ids(dataset, options: BatchConfig, epoch: int) -> list[list[int]]:
    return [b.ids.tolist() for b in dataset.batches(replace(options, epoch=epoch))]


def test_stream_runs_through_epochs_each_shuffled_by_its_epoch(h5_dataset):
    options = BatchConfig(batch_size=16, seed=3)
    first, second = epoch_ids(h5_dataset, options, 0), epoch_ids(h5_dataset, options, 1)
    assert first != second  # each epoch is shuffled differently, deterministically
    assert first == epoch_ids(h5_dataset, options, 0)
    stream = BatchStream(h5_dataset, options)
    assert stream.epoch_size(0) == len(first)
    got = [b.ids.tolist() for b in itertools.islice(stream, len(first) + 3)]
    assert got == first + second[:3]


def test_stream_starts_at_the_configs_epoch(h5_dataset):
    options = BatchConfig(batch_size=16, seed=3, epoch=2)
    stream = BatchStream(h5_dataset, options, repeat=False)
    assert [b.ids.tolist() for b in stream] == epoch_ids(h5_dataset, options, 2)


def test_stream_started_later_yields_the_same_batches(h5_dataset):
    options = BatchConfig(mode="padded", max_timesteps=600, seed=1)
    size = BatchStream(h5_dataset, options).epoch_size(0)
    whole = list(itertools.islice(BatchStream(h5_dataset, options), 2 * size))
    start = size + 2
    later = list(itertools.islice(BatchStream(h5_dataset, options, start=start),
                                  2 * size - start))
    assert len(later) == len(whole[start:])
    for a, b in zip(whole[start:], later, strict=True):
        for field in ("x", "y", "mask", "lengths", "ids"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_stream_without_repeat_stops_after_one_epoch_and_counts_timesteps(h5_dataset):
    options = BatchConfig(mode="padded", batch_size=50)
    stream = BatchStream(h5_dataset, options, repeat=False, track=True)
    batches = list(stream)
    assert len(batches) == stream.epoch_size(0)
    real, total = stream.take_stats(0, len(batches))
    assert real == h5_dataset.num_timesteps == sum(b.num_timesteps for b in batches)
    assert total == sum(b.mask.size for b in batches) > real
    assert stream.take_stats(0, len(batches)) == (0, 0)  # taken once
    np.testing.assert_array_equal(stream.take_ids(1), batches[1].ids)


def test_an_untracked_stream_keeps_nothing_of_what_it_yielded(h5_dataset):
    """Without ``track`` (the bridges' streams, which nobody takes stats from), an endless
    stream holds nothing per batch yielded, and asking for stats says why there are none."""
    import tracemalloc

    stream = iter(BatchStream(h5_dataset, BatchConfig(batch_size=4)))
    next(stream)
    tracemalloc.start()
    for _ in range(200):
        next(stream)
    before = tracemalloc.take_snapshot()
    for _ in range(2000):
        next(stream)
    grown = tracemalloc.take_snapshot().compare_to(before, "filename")
    tracemalloc.stop()
    stream_file = sys.modules[BatchStream.__module__].__file__
    assert sum(s.size_diff for s in grown if s.traceback[0].filename == stream_file) < 10_000
    with pytest.raises(ValueError, match=r"keeps no stats or ids.*track=True"):
        BatchStream(h5_dataset, BatchConfig(batch_size=4)).take_stats(0, 1)


def test_stream_keeps_the_data_error_for_the_caller():
    class Broken:
        def num_batches(self, config):
            return 2

        def batches(self, config, **_):
            raise ShardError("shard x.h5 is damaged")
            yield  # pragma: no cover

    stream = BatchStream(Broken(), BatchConfig(batch_size=4))
    with pytest.raises(ShardError, match="damaged"):
        next(iter(stream))
    assert isinstance(stream.error, ShardError)


def record_reads(dataset, monkeypatch) -> list[int]:
    """The shards ``dataset`` reads values of, in order, from any thread (a plan's reads
    of lengths alone are left out)."""
    reads: list[int] = []
    read_shard = dataset.read_shard

    def recording(index, *args, **kwargs):
        if kwargs.get("values", True):
            reads.append(index)
        return read_shard(index, *args, **kwargs)

    monkeypatch.setattr(dataset, "read_shard", recording)
    return reads


def first_window(dataset, options: BatchConfig) -> list[int]:
    from seqdata.read.batching import shard_order

    return shard_order(len(dataset.shards), options)[:options.window_shards].tolist()


@pytest.mark.parametrize("window_shards", [1, 2, 3])
def test_the_next_epochs_first_window_is_read_while_this_epoch_ends(h5_dataset, monkeypatch,
                                                                    window_shards):
    """Once the last batch of epoch 0 is handed out, the stream reads epoch 1's first
    window without being asked; the batches of every epoch are those of the epoch alone,
    values included."""
    options = BatchConfig(batch_size=16, seed=5, window_shards=window_shards)
    expected = [list(h5_dataset.batches(replace(options, epoch=e))) for e in range(3)]
    reads = record_reads(h5_dataset, monkeypatch)
    stream = iter(BatchStream(h5_dataset, options))
    got = [next(stream) for _ in expected[0]]
    ahead = first_window(h5_dataset, replace(options, epoch=1))
    deadline = time.monotonic() + 30
    # Read with no batch of epoch 1 asked for. (Epoch 0's last reads may be that window
    # too: then only their number says that it has been read again.)
    while len(reads) < len(h5_dataset.shards) + len(ahead) or reads[-len(ahead):] != ahead:
        assert time.monotonic() < deadline, reads
        time.sleep(0.001)
    assert len(reads) == len(h5_dataset.shards) + len(ahead)
    got += [next(stream) for _ in range(len(expected[1]) + len(expected[2]))]
    stream.close()
    for a, b in zip(got, [b for epoch in expected for b in epoch], strict=True):
        for field in ("x", "y", "mask", "lengths", "ids"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not [t for t in threading.enumerate() if t.name.startswith("seqdata-read-ahead")]


def test_a_window_read_ahead_for_another_epoch_is_not_used(pq_dataset, monkeypatch):
    """A reader whose read-ahead was for another config than the one asked for next
    reads that one's windows itself: its batches are those of a fresh read."""
    options = BatchConfig(batch_size=16, seed=5, window_shards=1)
    other = replace(options, seed=6)
    assert first_window(pq_dataset, options) != first_window(pq_dataset, other)
    reader = WindowReader()
    try:
        list(pq_dataset.batches(options, reader=reader, then=replace(options, epoch=1)))
        got = list(pq_dataset.batches(other, reader=reader))
    finally:
        reader.close()
    for a, b in zip(got, pq_dataset.batches(other), strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.ids, b.ids)
