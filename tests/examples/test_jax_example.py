"""examples/jax_lstm.py trains in a real process on static-shape batches, compiling its
step at most once per bucket."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np

from seqdata import build_dataset
from tests.helpers import ROOT, SMALL_SPEC

LINE = re.compile(r"epoch (\d+)/\d+: loss (\S+) accuracy (\S+) steps (\d+) "
                  r"compiles (\d+) buckets (\d+)")


def test_the_lstm_example_trains_with_one_compile_per_bucket(tmp_path):
    data = tmp_path / "data"
    build_dataset(data, SMALL_SPEC, "parquet", num_buckets=3, progress=False)
    # Less XLA optimization: the step compiles in a quarter of the time, same results.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "jax_lstm.py"), str(data), "--epochs", "2",
         "--max-timesteps", "1500", "--learning-rate", "0.01", "--seed", "1"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    epochs = [LINE.fullmatch(line).groups() for line in result.stdout.strip().splitlines()]
    assert [int(e[0]) for e in epochs] == [1, 2]
    losses = [float(e[1]) for e in epochs]
    assert np.isfinite(losses).all() and losses[1] < losses[0]
    assert all(0 <= float(e[2]) <= 1 and int(e[3]) > 0 for e in epochs)
    compiles, buckets = int(epochs[-1][4]), int(epochs[-1][5])
    assert buckets == 3 and 1 <= compiles <= buckets
