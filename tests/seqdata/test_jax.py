"""The JAX bridge: the dataset's batches as device arrays, prefetched in order, with
static shapes so that a jitted step compiles at most once per bucket."""

from __future__ import annotations

import itertools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqdata.jax
from seqdata import BatchConfig, BatchStream, SpecError, open_dataset
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


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
@pytest.mark.parametrize("kw", [dict(batch_size=16), dict(max_timesteps=700),
                                dict(mode="padded", batch_size=32),
                                dict(mode="padded", max_timesteps=900)], ids=str)
def test_a_jitted_step_compiles_at_most_once_per_bucket_over_an_epoch(datasets, fmt, kw):
    ds = open_dataset(datasets[fmt])
    traces = []

    @jax.jit
    def step(w, x, y, mask):
        traces.append(x.shape)  # runs only when the step is traced, i.e. compiled
        logits = x @ w
        loss = optax_free_bce(logits, y, mask)
        return w - 0.1 * jax.grad(lambda v: optax_free_bce(x @ v, y, mask))(w), loss

    w = jnp.zeros(ds.num_features)
    seen = []
    for a in seqdata.jax.batches(datasets[fmt], seed=2, **kw):
        w, loss = step(w, a["x"], a["y"], a["mask"])
        seen.append(a["ids"])
        assert np.isfinite(float(loss))
    ids = np.concatenate(seen)
    np.testing.assert_array_equal(np.sort(ids[ids >= 0]), np.arange(ds.num_sequences))
    buckets = 1 if kw.get("mode") == "padded" else len(ds.boundaries)
    assert len(traces) == len(set(traces)) <= buckets
    assert step._cache_size() == len(traces)


def optax_free_bce(logits, y, mask):
    """Mean binary cross-entropy over the real steps."""
    losses = jnp.logaddexp(0.0, logits) - y * logits
    return (losses * mask).sum() / jnp.maximum(mask.sum(), 1)


def test_batches_are_the_datasets_static_shape_batches_in_order(pq_dataset):
    expected = list(pq_dataset.batches(batch_size=16, seed=6, static_shapes=True))
    got = list(seqdata.jax.batches(pq_dataset, batch_size=16, seed=6, depth=3))
    assert len(got) == len(expected) and any((b.ids == -1).any() for b in expected)
    for a, batch in zip(got, expected, strict=True):
        assert isinstance(a["x"], jax.Array)
        for name in ("x", "y", "mask", "lengths", "ids"):
            np.testing.assert_array_equal(np.asarray(a[name]), getattr(batch, name))


def test_batches_defaults_and_overrides(h5_dataset):
    def shapes(*args, **kw):
        return {a["x"].shape for a in seqdata.jax.batches(h5_dataset, *args, **kw)}
    assert len(shapes(batch_size=16)) == len(h5_dataset.boundaries)  # static by default
    assert len(shapes(batch_size=16, static_shapes=False)) > len(h5_dataset.boundaries)
    # a BatchConfig is used as given; same_length turns the default off
    assert len(shapes(BatchConfig(batch_size=16))) > len(h5_dataset.boundaries)
    assert len(shapes(batch_size=4, same_length=True)) > len(h5_dataset.boundaries)
    with pytest.raises(SpecError, match="static_shapes cannot be combined"):
        seqdata.jax.batches(h5_dataset, batch_size=4, same_length=True, static_shapes=True)
