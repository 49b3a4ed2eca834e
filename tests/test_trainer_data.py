"""The tf.data bridge: explicit signature, one-hot labels and mask weights, and the
numbered stream of epochs (order, resume position, per-batch stats)."""

from __future__ import annotations

import itertools
from dataclasses import asdict, replace

import numpy as np
import pytest

from seqdata import Batch
from seqdata.batching import BatchConfig
from seqdata.errors import ShardError
from trainer.data import BatchStream, keras_arrays, keras_signature, to_tf_dataset


def epoch_ids(dataset, options: BatchConfig, epoch: int) -> list[list[int]]:
    return [b.ids.tolist() for b in dataset.batches(**asdict(replace(options, epoch=epoch)))]


def test_signature_has_a_none_time_axis():
    x, y, w = keras_signature(5)
    assert x.shape.as_list() == [None, None, 5]
    assert y.shape.as_list() == [None, None, 2]
    assert w.shape.as_list() == [None, None]
    spec = to_tf_dataset(lambda: iter(()), 7).element_spec
    assert [s.shape.as_list() for s in spec] == [[None, None, 7], [None, None, 2], [None, None]]


def test_keras_arrays_one_hot_labels_and_mask_weights():
    mask = np.array([[True, True, False], [True, True, True]])
    batch = Batch(x=np.ones((2, 3, 4), np.float32) * mask[..., None],
                  y=np.array([[1, 0, 0], [0, 1, 1]], np.uint8), mask=mask,
                  lengths=np.array([2, 3], np.int32), ids=np.array([5, 6], np.int64))
    x, y, w = keras_arrays(batch)
    assert x.dtype == y.dtype == w.dtype == np.float32
    np.testing.assert_array_equal(y.argmax(-1), batch.y)
    np.testing.assert_array_equal(y.sum(-1), 1.0)
    np.testing.assert_array_equal(w, mask.astype(np.float32))


def test_stream_runs_through_epochs_each_shuffled_by_its_epoch(h5_dataset):
    options = BatchConfig(batch_size=16, seed=3)
    first, second = epoch_ids(h5_dataset, options, 0), epoch_ids(h5_dataset, options, 1)
    assert first != second  # each epoch is shuffled differently, deterministically
    assert first == epoch_ids(h5_dataset, options, 0)
    stream = BatchStream(h5_dataset, options)
    assert stream.epoch_size(0) == len(first)
    got = [b.ids.tolist() for b in itertools.islice(stream._batches(), len(first) + 3)]
    assert got == first + second[:3]


def test_stream_started_later_yields_the_same_batches(h5_dataset):
    options = BatchConfig(mode="padded", max_timesteps=600, seed=1)
    size = BatchStream(h5_dataset, options).epoch_size(0)
    whole = list(itertools.islice(BatchStream(h5_dataset, options)(), 2 * size))
    start = size + 2
    later = list(itertools.islice(BatchStream(h5_dataset, options, start=start)(),
                                  2 * size - start))
    assert len(later) == len(whole[start:])
    for a, b in zip(whole[start:], later, strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)


def test_stream_without_repeat_stops_after_one_epoch_and_counts_timesteps(h5_dataset):
    options = BatchConfig(mode="padded", batch_size=50)
    stream = BatchStream(h5_dataset, options, repeat=False)
    batches = list(stream())
    assert len(batches) == stream.epoch_size(0)
    real, total = stream.take_stats(0, len(batches))
    assert real == h5_dataset.num_timesteps == int(sum(w.sum() for _, _, w in batches))
    assert total == sum(w.size for _, _, w in batches) > real
    assert stream.take_stats(0, len(batches)) == (0, 0)  # taken once


def test_tf_dataset_yields_batches_of_changing_length(h5_dataset):
    options = BatchConfig(batch_size=32, seed=0)
    stream = BatchStream(h5_dataset, options, repeat=False)
    dataset = to_tf_dataset(stream, 5, stream.epoch_size(0))
    lengths = set()
    for (x, y, w), batch in zip(dataset.as_numpy_iterator(),
                                h5_dataset.batches(**asdict(options)), strict=True):
        np.testing.assert_array_equal(x, batch.x)
        np.testing.assert_array_equal(w, batch.mask)
        np.testing.assert_array_equal(y[..., 1], batch.y)
        lengths.add(x.shape[1])
    assert len(lengths) > 3


def test_stream_keeps_the_data_error_for_the_caller():
    class Broken:
        def num_batches(self, **options):
            return 2

        def batches(self, **options):
            raise ShardError("shard x.h5 is damaged")
            yield  # pragma: no cover

    stream = BatchStream(Broken(), BatchConfig(batch_size=4))
    with pytest.raises(ShardError, match="damaged"):
        next(stream())
    assert isinstance(stream.error, ShardError)
