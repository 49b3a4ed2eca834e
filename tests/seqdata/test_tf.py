"""The tf.data bridge: explicit signature, one-hot labels and mask weights, the same
batches as the dataset's, and TensorFlow loaded only when the bridge is used."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from seqdata import Batch
from seqdata.read.config import BatchConfig
from seqdata.read.stream import BatchStream
from seqdata.tf import keras_arrays, keras_batches, keras_signature, tf_dataset, to_tf_dataset


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


def test_tf_dataset_yields_batches_of_changing_length(h5_dataset):
    options = BatchConfig(batch_size=32, seed=0)
    stream = BatchStream(h5_dataset, options, repeat=False)
    dataset = to_tf_dataset(keras_batches(stream), 5, stream.epoch_size(0))
    lengths = set()
    for (x, y, w), batch in zip(dataset.as_numpy_iterator(),
                                h5_dataset.batches(options), strict=True):
        np.testing.assert_array_equal(x, batch.x)
        np.testing.assert_array_equal(w, batch.mask)
        np.testing.assert_array_equal(y[..., 1], batch.y)
        lengths.add(x.shape[1])
    assert len(lengths) > 3


def test_tf_dataset_is_one_epoch_of_the_datasets_batches_in_order(pq_dataset):
    config = BatchConfig(max_timesteps=900, seed=4, epoch=1)
    expected = list(pq_dataset.batches(config))
    data = tf_dataset(pq_dataset, config)
    assert int(data.cardinality()) == len(expected)
    got = list(data.as_numpy_iterator())
    assert len(got) == len(expected)
    for (x, y, w), batch in zip(got, expected, strict=True):
        np.testing.assert_array_equal(x, batch.x)
        np.testing.assert_array_equal(y.argmax(-1), batch.y)
        np.testing.assert_array_equal(w, batch.mask)


def test_importing_the_bridge_does_not_import_tensorflow():
    code = ("import sys, seqdata.tf; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]
