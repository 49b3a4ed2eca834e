"""examples/torch_ddp.py: DDP over gloo in real processes, each rank reading its part of
every global batch: equal steps, each sequence once, the weights of one rank, and a run
stopped on 2 ranks resumed on 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from seqdata import LagSumSpec, build_dataset, open_dataset
from tests.helpers import ROOT

OPTIONS = ["--max-timesteps", "3000", "--seed", "3", "--lr", "0.01"]


def ddp(data, tmp_path, name, *args) -> dict:
    report = tmp_path / f"{name}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "torch_ddp.py"), str(data), *OPTIONS,
         "--report", str(report), *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "data"
    build_dataset(out, LagSumSpec(num_sequences=400, seed=2, chunk_size=128), "hdf5",
                  num_buckets=4, progress=False)
    return out


def test_two_ranks_step_alike_and_train_as_one(data, tmp_path):
    two = ddp(data, tmp_path, "two", "--ranks", "2")
    one = ddp(data, tmp_path, "one", "--ranks", "1")
    ranks = two["ranks"]
    global_batches = [b.ids for b in open_dataset(data).batches(
        "bucketed", max_timesteps=3000, seed=3)]
    assert [r["steps"] for r in ranks] == [len(global_batches)] * 2  # equal steps
    for step, ids in enumerate(global_batches):  # the ranks' parts make the global batch
        assert ranks[0]["ids"][step] + ranks[1]["ids"][step] == ids.tolist()
    # DDP keeps the ranks' weights equal; the global-batch loss makes them one rank's.
    np.testing.assert_array_equal(ranks[0]["weights"], ranks[1]["weights"])
    np.testing.assert_allclose(ranks[0]["weights"], one["ranks"][0]["weights"], atol=2e-5)


def test_stopped_on_two_ranks_resumes_on_one(data, tmp_path):
    checkpoint = tmp_path / "run.pt"
    whole = ddp(data, tmp_path, "whole", "--ranks", "2")
    first = ddp(data, tmp_path, "first", "--ranks", "2", "--stop-after", "3",
                "--checkpoint", str(checkpoint))
    assert first["step"] == 3 and [r["steps"] for r in first["ranks"]] == [3, 3]
    rest = ddp(data, tmp_path, "rest", "--ranks", "1", "--resume", str(checkpoint))
    after = [a + b for a, b in zip(whole["ranks"][0]["ids"], whole["ranks"][1]["ids"],
                                   strict=True)][3:]
    assert rest["ranks"][0]["ids"] == after  # the same global batches from step 3 on
    np.testing.assert_allclose(rest["ranks"][0]["weights"], whole["ranks"][0]["weights"],
                               atol=2e-5)
