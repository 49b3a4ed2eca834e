"""The numbered stream of epochs every bridge consumes: order, resume position, stats."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from seqdata import BatchConfig, BatchStream
from seqdata.errors import ShardError


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
    stream = BatchStream(h5_dataset, options, repeat=False)
    batches = list(stream)
    assert len(batches) == stream.epoch_size(0)
    real, total = stream.take_stats(0, len(batches))
    assert real == h5_dataset.num_timesteps == sum(b.num_timesteps for b in batches)
    assert total == sum(b.mask.size for b in batches) > real
    assert stream.take_stats(0, len(batches)) == (0, 0)  # taken once
    np.testing.assert_array_equal(stream.take_ids(1), batches[1].ids)


def test_stream_keeps_the_data_error_for_the_caller():
    class Broken:
        def num_batches(self, config):
            return 2

        def batches(self, config):
            raise ShardError("shard x.h5 is damaged")
            yield  # pragma: no cover

    stream = BatchStream(Broken(), BatchConfig(batch_size=4))
    with pytest.raises(ShardError, match="damaged"):
        next(iter(stream))
    assert isinstance(stream.error, ShardError)
