"""The PyTorch bridge: the dataset's batches as tensors, prefetched in order."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import torch

from seqdata import BatchConfig, BatchStream
from seqdata.torch import prefetch_to_device, to_tensors


def test_tensors_share_the_batchs_memory_and_types(h5_dataset):
    batch = next(h5_dataset.batches(BatchConfig("padded", batch_size=8)))
    t = to_tensors(batch)
    assert (t["x"].dtype, t["y"].dtype, t["mask"].dtype) == \
        (torch.float32, torch.uint8, torch.bool)
    assert (t["lengths"].dtype, t["ids"].dtype) == (torch.int32, torch.int64)
    t["x"][0, 0, 0] = 42.0  # no copy: the tensor is a view of the batch
    assert batch.x[0, 0, 0] == 42.0
    assert bool((t["mask"].sum(1) == t["lengths"]).all())


def test_prefetch_yields_the_streams_batches_in_order(pq_dataset):
    config = BatchConfig(max_timesteps=800, seed=2)
    expected = list(itertools.islice(BatchStream(pq_dataset, config), 40))
    got = list(prefetch_to_device(itertools.islice(BatchStream(pq_dataset, config), 40),
                                  "cpu", depth=2))
    assert len(got) == 40 > pq_dataset.num_batches(config)  # into the second epoch
    for t, batch in zip(got, expected, strict=True):
        for name in ("x", "y", "mask", "lengths", "ids"):
            np.testing.assert_array_equal(t[name].numpy(), getattr(batch, name))


def test_importing_the_bridge_does_not_import_torch():
    code = "import sys, seqdata.torch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
