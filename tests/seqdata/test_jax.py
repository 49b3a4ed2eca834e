"""The JAX bridge: the dataset's batches as device arrays, prefetched in order."""

from __future__ import annotations

import itertools
import subprocess
import sys

import jax
import numpy as np

from seqdata import BatchConfig, BatchStream
from seqdata.jax import prefetch_to_device, to_arrays


def test_arrays_hold_the_batch_on_the_device(h5_dataset):
    batch = next(h5_dataset.batches(BatchConfig("padded", batch_size=8)))
    a = to_arrays(batch, jax.devices()[0])
    assert isinstance(a["x"], jax.Array) and a["x"].devices() == {jax.devices()[0]}
    assert (a["x"].dtype, a["y"].dtype, a["mask"].dtype, a["lengths"].dtype) == \
        (np.float32, np.uint8, np.bool_, np.int32)
    assert a["ids"].dtype == np.int64  # kept on the host: JAX would narrow it
    for name in ("x", "y", "mask", "lengths", "ids"):
        np.testing.assert_array_equal(np.asarray(a[name]), getattr(batch, name))


def test_prefetch_yields_the_streams_batches_in_order(pq_dataset):
    config = BatchConfig(batch_size=16, pad_to_bucket=True, seed=6)
    expected = list(itertools.islice(BatchStream(pq_dataset, config), 30))
    got = list(prefetch_to_device(itertools.islice(BatchStream(pq_dataset, config), 30)))
    assert len(got) == 30
    for a, batch in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(a["x"]), batch.x)
        np.testing.assert_array_equal(a["ids"], batch.ids)


def test_a_jitted_step_sees_one_shape_per_bucket_with_pad_to_bucket(h5_dataset):
    traced = []

    @jax.jit
    def masked_mean(x, mask):
        traced.append(x.shape)
        return (x[..., 0] * mask).sum() / mask.sum()

    config = BatchConfig(batch_size=16, pad_to_bucket=True, drop_remainder=True)
    for a in prefetch_to_device(h5_dataset.batches(config)):
        masked_mean(a["x"], a["mask"])
    assert len(traced) == len(set(traced)) <= len(h5_dataset.boundaries)


def test_importing_the_bridge_does_not_import_jax():
    code = "import sys, seqdata.jax; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
