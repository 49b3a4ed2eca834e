"""The benchmark scripts run as documented (``python benchmarks/X.py``, from outside the
packages); the GPU check end to end, here on the CPU."""

import json
import subprocess
import sys

import numpy as np
import torch

from benchmarks.gpu_torch import SeedLSTM, masked_loss, stream
from tests.helpers import ROOT


def run_script(name, *args):
    """``python benchmarks/NAME ARGS`` from the repository root, as the docs say."""
    return subprocess.run([sys.executable, f"benchmarks/{name}", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_the_benchmark_script_offers_its_flags():
    done = run_script("bench.py", "--help")
    assert done.returncode == 0, done.stderr
    for flag in ("--quick", "--json", "--sequences", "--scratch"):
        assert flag in done.stdout


def test_the_script_trains_both_ways_on_the_same_batches(datasets, tmp_path):
    out = tmp_path / "torch.json"
    done = run_script("gpu_torch.py", "--data", datasets["hdf5"], "--batch-sizes", "16,40",
                      "--steps", "5", "--warmup", "1", "--device", "cpu", "--json", out)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["device"] == "CPU" and [r["batch_size"] for r in report["rows"]] == [16, 40]
    for row in report["rows"]:
        assert row["steps"] == 5
        assert row["from_shards_per_s"] > 0 and row["in_memory_per_s"] > 0
    assert "from shards M/s" in done.stdout


def test_stream_yields_the_datasets_batches_across_epochs(h5_dataset):
    device = torch.device("cpu")
    per_epoch = h5_dataset.num_batches(batch_size=16)
    got = list(stream(h5_dataset, 16, device, per_epoch + 3))
    assert len(got) == per_epoch + 3
    first = list(h5_dataset.batches(batch_size=16, epoch=0))
    second = list(h5_dataset.batches(batch_size=16, epoch=1))
    for (x, y, mask), batch in zip(got, first + second[:3], strict=True):
        np.testing.assert_array_equal(x.numpy(), batch.x)
        np.testing.assert_array_equal(y.numpy(), batch.y)
        np.testing.assert_array_equal(mask.numpy(), batch.mask)


def test_the_model_has_the_seeds_sizes_and_the_loss_ignores_padding():
    model = SeedLSTM(5)
    assert [model.first.hidden_size, model.second.hidden_size, model.head.out_features] == \
        [32, 8, 2]
    assert sum(p.numel() for p in model.parameters()) == 6354  # Keras: 6,194 (one bias)
    logits = torch.randn(2, 4, 2)
    y = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.uint8)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    changed = logits.clone()
    changed[1, 2:] = 100.0  # anything at padded steps
    assert torch.allclose(masked_loss(logits, y, mask), masked_loss(changed, y, mask))
