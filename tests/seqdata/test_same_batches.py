"""One dataset, one config: the same batch ids, in the same order, from every bridge."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader

import seqdata.jax
import seqdata.keras
import seqdata.tf
import seqdata.torch
from seqdata import BatchConfig

CONFIGS = {
    "bucketed count": dict(mode="bucketed", batch_size=24, seed=5),
    "bucketed budget": dict(mode="bucketed", max_timesteps=1500, seed=6),
    "padded count": dict(mode="padded", batch_size=40, seed=7),
}


def ids_of(batches) -> list[np.ndarray]:
    return [np.asarray(b) for b in batches]


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_bridge_yields_the_epochs_ids_in_order(datasets, fmt, name):
    options = CONFIGS[name]
    root = datasets[fmt]
    ds = seqdata.open_dataset(root)
    want = ids_of(b.ids for b in ds.batches(BatchConfig(**options)))
    assert sum(len(w) for w in want) == ds.num_sequences  # every sequence, once

    got = {}
    for workers in (0, 2):
        data = seqdata.torch.BatchDataset(root, **options)
        got[f"torch, {workers} workers"] = ids_of(
            b["ids"].numpy() for b in DataLoader(data, batch_size=None, num_workers=workers))
    # tf.data and Keras' PyDataset carry (x, one-hot y, mask as weights), no ids: their
    # batches must equal the numpy batches value for value.
    numpy_batches = list(ds.batches(BatchConfig(**options)))
    keras_input = seqdata.keras.keras_input(numpy_batches, 5, backend="jax")
    for bridge, elements in (("tf.data", seqdata.tf.dataset(root, **options)),
                             ("keras PyDataset", (keras_input[i]
                                                  for i in range(len(keras_input))))):
        count = 0
        for (x, y, weights), batch in zip(elements, numpy_batches, strict=True):
            np.testing.assert_array_equal(np.asarray(x), batch.x, err_msg=bridge)
            np.testing.assert_array_equal(np.asarray(y).argmax(-1)[batch.mask],
                                          batch.y[batch.mask], err_msg=bridge)
            np.testing.assert_array_equal(np.asarray(weights), batch.mask, err_msg=bridge)
            count += 1
        assert count == len(want), bridge
    # JAX: static shapes; without their fill rows (id -1) the same batches. With a budget
    # the static batches are cut by the bucket bound (as pad_to_bucket cuts them).
    if "max_timesteps" in options:
        want_static = ids_of(b.ids for b in ds.batches(BatchConfig(**options,
                                                                   pad_to_bucket=True)))
    else:
        want_static = want
    got_jax = ids_of(a["ids"][a["ids"] >= 0] for a in seqdata.jax.batches(root, **options))
    assert len(got_jax) == len(want_static)
    for g, w in zip(got_jax, want_static, strict=True):
        np.testing.assert_array_equal(g, w)
    for bridge, ids in got.items():
        assert len(ids) == len(want), bridge
        for g, w in zip(ids, want, strict=True):
            np.testing.assert_array_equal(g, w, err_msg=bridge)
