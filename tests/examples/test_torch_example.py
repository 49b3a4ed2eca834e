"""examples/torch_lstm.py trains in a real process, fed by two DataLoader workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np

from seqdata import LagSumSpec, build_dataset, open_dataset
from tests.helpers import ROOT

LINE = re.compile(r"epoch (\d+)/\d+: loss (\S+) accuracy (\S+) timesteps (\d+) seconds (\S+)")


def test_the_torch_lstm_example_trains_through_two_workers(tmp_path):
    data = tmp_path / "data"
    spec = LagSumSpec(num_sequences=1000, seed=1, chunk_size=256)
    build_dataset(data, spec, "hdf5", num_buckets=4, progress=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "torch_lstm.py"), str(data), "--epochs", "2",
         "--max-timesteps", "8000", "--num-workers", "2", "--lr", "0.01", "--seed", "1",
         "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    epochs = [LINE.fullmatch(line).groups() for line in result.stdout.strip().splitlines()]
    assert [int(e[0]) for e in epochs] == [1, 2]
    losses = [float(e[1]) for e in epochs]
    assert np.isfinite(losses).all() and losses[1] < losses[0] < 0.75
    assert all(0 <= float(e[2]) <= 1 for e in epochs)
    # every real timestep of the dataset, once an epoch
    assert [int(e[3]) for e in epochs] == [open_dataset(data).num_timesteps] * 2
