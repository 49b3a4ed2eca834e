"""trainer train --resume after SIGKILL at a random step: the same batches, nothing
skipped or repeated, the same weights (docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np

from tests.helpers import ROOT, run_cli

ARGS = ("--mode", "bucketed", "--batch-size", "32", "--steps-per-epoch", "5", "--epochs", "3",
        "--checkpoint-every", "2", "--log-batches", "--quiet")


def train_args(data, run, *extra):
    return ["train", "--data", str(data), "--out", str(run), *ARGS, *extra]


def logged(run):
    return [json.loads(line) for line in (run / "batches.jsonl").read_text().splitlines()]


def weights(path):
    return keras.saving.load_model(path, compile=False, safe_mode=True).get_weights()


def kill_after_steps(data, run, steps, *extra):
    """Start a training run and SIGKILL it once it has logged ``steps`` steps."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "trainer", *train_args(data, run, *extra)],
                            env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    log = run / "batches.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= steps:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_resume_after_sigkill_trains_exactly_the_remaining_batches(datasets, tmp_path):
    data = datasets["hdf5"]
    straight = tmp_path / "straight"
    result = run_cli(*train_args(data, straight), module="trainer")
    assert result.returncode == 0, result.stderr
    reference = logged(straight)
    assert [entry["step"] for entry in reference] == list(range(1, 16))
    rng = np.random.default_rng(7)
    mid_epoch = 0
    for trial, steps in enumerate(sorted(rng.choice(np.arange(2, 15), 2, replace=False))):
        run = tmp_path / f"killed{trial}"
        kill_after_steps(data, run, int(steps))
        assert not (run / "model.keras").exists()  # it really died mid-run
        resumed = run_cli(*train_args(data, run), "--resume", module="trainer")
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming" in resumed.stdout
        mid_epoch += " at step " in resumed.stdout
        # The log is the model's history: the steps up to the checkpoint, then the resumed
        # ones. It equals the uninterrupted run's: nothing skipped, nothing repeated.
        assert logged(run) == reference
        for a, b in zip(weights(straight / "model.keras"), weights(run / "model.keras"),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        assert [r.split(",")[0] for r in (run / "history.csv").read_text().splitlines()[1:]] \
            == ["1", "2", "3"]
    assert mid_epoch  # at least one resume started inside an epoch


def test_resume_mid_schedule_continues_the_learning_rates_exactly(datasets, tmp_path):
    """A cosine schedule with warm-up, killed mid-run: the resumed steps have the
    uninterrupted run's learning rates (logged per step) and it ends with its weights."""
    data = datasets["parquet"]
    schedule = ("--schedule", "cosine", "--warmup-steps", "4", "--final-fraction", "0.1",
                "--learning-rate", "0.01")
    straight = tmp_path / "straight"
    result = run_cli(*train_args(data, straight), *schedule, module="trainer")
    assert result.returncode == 0, result.stderr
    reference = logged(straight)
    rates = [entry["learning_rate"] for entry in reference]
    assert rates[0] < rates[3] and rates[4] > rates[-1] > 0  # warm-up, then decay
    run = tmp_path / "killed"
    kill_after_steps(data, run, 7, *schedule)
    assert not (run / "model.keras").exists()
    resumed = run_cli(*train_args(data, run), *schedule, "--resume", module="trainer")
    assert resumed.returncode == 0, resumed.stderr
    assert logged(run) == reference  # same ids and learning rate at every step
    for a, b in zip(weights(straight / "model.keras"), weights(run / "model.keras"),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
