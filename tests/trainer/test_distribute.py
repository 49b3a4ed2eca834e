"""trainer train --strategy: tf.distribute on several workers (real processes on
127.0.0.1) and several devices, against one process on the same global batches."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers import ROOT, assert_one_line_error, run_cli, run_trainer
from trainer.distribute import Placement, read_tf_config
from trainer.errors import ConfigError
from trainer.run_dir import RunDir

ARGS = ("--mode", "bucketed", "--batch-size", "32", "--epochs", "2", "--checkpoint-every", "2",
        "--log-batches", "--quiet")
HANG = 300  # seconds: a worker still running then is taken to hang


def env() -> dict[str, str]:
    """The workers' environment: this process's as it is now (its TMPDIR is the tests')."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def train_args(datasets: dict[str, Path], run: Path, *extra: str) -> list[str]:
    """Train on the HDF5 dataset, validate on its Parquet copy (another reader, same data)."""
    return ["train", "--data", str(datasets["hdf5"]), "--out", str(run),
            "--validation-data", str(datasets["parquet"]), *ARGS, *extra]


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def free_ports(n: int) -> list[int]:
    """``n`` ports free on 127.0.0.1 now, below Linux's ephemeral range (32768-60999):
    a port the kernel hands out for bind(0) may be handed out again, to the outgoing
    connections of the workers of a test running beside this one, before ours bind it."""
    rng = np.random.default_rng()
    ports: list[int] = []
    while len(ports) < n:
        port = int(rng.integers(20000, 32768))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


class Workers:
    """``trainer train --strategy multi-worker`` in n processes of a local cluster, each
    in a session of its own, output to files; all killed on exit."""

    def __init__(self, n: int, args: list[str], logs: Path) -> None:
        ports = free_ports(n)
        logs.mkdir(parents=True, exist_ok=True)
        self.outputs = [logs / f"worker-{i}.out" for i in range(n)]
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "trainer", *args, "--strategy", "multi-worker"],
            env={**env(), "TF_CONFIG": tf_config(ports, i)}, cwd=ROOT, start_new_session=True,
            stdout=out.open("w"), stderr=subprocess.STDOUT) for i, out in enumerate(self.outputs)]

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def wait(self) -> list[str]:
        """Every worker's output, once all have ended with status 0 (none may hang)."""
        deadline = time.monotonic() + HANG
        for proc in self.procs:
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"a worker was still running after {HANG} s: {self.text()}")
        outputs = [out.read_text() for out in self.outputs]
        assert [p.returncode for p in self.procs] == [0] * len(self.procs), self.text()
        return outputs

    def text(self) -> str:
        return "\n".join(f"--- {o.name}\n{o.read_text()[-3000:]}" for o in self.outputs)


def merged_log(run: Path) -> list[dict]:
    """The run's batch logs merged by step: each step's ids, rank by rank (fill rows of
    id -1 left out), and the chief's learning rate."""
    steps: dict[int, dict] = {}
    logs = sorted(run.glob("batches.rank-*.jsonl"))
    for path in [run / "batches.jsonl", *logs]:
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            step = steps.setdefault(entry["step"], {"step": entry["step"], "ids": [],
                                                    "learning_rate": entry["learning_rate"]})
            step["ids"] += [i for i in entry["ids"] if i >= 0]
    return [steps[s] for s in sorted(steps)]


def history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def weights(path: Path) -> list[np.ndarray]:
    return keras.saving.load_model(path, compile=False, safe_mode=True).get_weights()


def assert_same_weights(a: Path, b: Path, atol: float = 2e-5) -> None:
    for x, y in zip(weights(a), weights(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)


def assert_same_steps(a: list[dict], b: list[dict]) -> None:
    assert [s["step"] for s in a] == [s["step"] for s in b]
    assert [s["ids"] for s in a] == [s["ids"] for s in b]
    np.testing.assert_allclose([s["learning_rate"] for s in a],
                               [s["learning_rate"] for s in b], rtol=1e-6)


@pytest.fixture(scope="module")
def one_process(datasets, tmp_path_factory) -> Path:
    """The uninterrupted run in one process: what the distributed runs must train."""
    run = tmp_path_factory.mktemp("distribute") / "one"
    result = run_cli(*train_args(datasets, run), module="trainer")
    assert result.returncode == 0, result.stderr
    return run


def test_two_workers_train_the_global_batches_in_equal_steps(datasets, one_process,
                                                            tmp_path):
    """2 workers on 127.0.0.1: the same number of steps, no hang, identical final
    weights on both, and the weights, ids and learning rates of one process."""
    run = tmp_path / "two"
    with Workers(2, train_args(datasets, run), tmp_path / "logs") as workers:
        outputs = workers.wait()
    lines = [next(line for line in out.splitlines() if line.startswith("worker "))
             for out in outputs]
    steps = len(merged_log(one_process))
    for rank, line in enumerate(lines):
        assert line.startswith(f"worker {rank} of 2: trained steps 1..{steps}, "), line
    assert lines[0].split()[-1] == lines[1].split()[-1]  # final weights' sha256
    assert "model:" in outputs[0] and "model:" not in outputs[1]  # the chief writes RUN
    logged = [json.loads(x) for x in (run / "batches.rank-1.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged] == list(range(1, steps + 1))
    assert_same_steps(merged_log(run), merged_log(one_process))
    assert_same_weights(run / "model.keras", one_process / "model.keras")
    rows = [history(r) for r in (run, one_process)]
    assert [row["epoch"] for row in rows[0]] == ["1", "2"]
    for key in ("masked_loss", "masked_accuracy", "val_masked_loss", "val_masked_accuracy"):
        np.testing.assert_allclose([float(row[key]) for row in rows[0]],  # global, not rank 0's
                                   [float(row[key]) for row in rows[1]], rtol=0, atol=1e-5)
    assert sorted(p.name for p in run.glob("batches*")) == ["batches.jsonl",
                                                            "batches.rank-1.jsonl"]


def test_killed_on_two_workers_resumes_on_one(datasets, one_process, tmp_path):
    """Both workers SIGKILLed after a mid-epoch checkpoint; resumed in one process
    (elastic): the steps after the checkpoint are the uninterrupted run's, and so are
    the final weights."""
    run = tmp_path / "killed"
    args = train_args(datasets, run)
    with Workers(2, args, tmp_path / "logs") as workers:
        deadline = time.monotonic() + HANG
        while not RunDir(run).saved_checkpoints():
            assert time.monotonic() < deadline, workers.text()
            assert all(p.poll() is None for p in workers.procs), workers.text()
            time.sleep(0.02)
        workers.kill()
    assert not (run / "model.keras").exists()  # it really died mid-run
    resumed = run_cli(*args, "--resume", module="trainer")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and " at step " in resumed.stdout  # mid-epoch
    assert_same_steps(merged_log(run), merged_log(one_process))
    assert_same_weights(run / "model.keras", one_process / "model.keras")


def test_a_worker_that_dies_ends_the_others_with_one_clear_error(datasets, tmp_path):
    """Worker 1 SIGKILLed mid-run: worker 0 does not wait for it forever; it ends with
    exit status 2 and a last line that says what happened and how to go on."""
    run = tmp_path / "orphaned"
    args = [*train_args(datasets, run), "--epochs", "50", "--collective-timeout", "60"]
    with Workers(2, args, tmp_path / "logs") as workers:
        deadline = time.monotonic() + HANG
        while not RunDir(run).saved_checkpoints():  # training for sure, both workers
            assert time.monotonic() < deadline, workers.text()
            assert all(p.poll() is None for p in workers.procs), workers.text()
            time.sleep(0.02)
        os.killpg(workers.procs[1].pid, signal.SIGKILL)
        try:
            code = workers.procs[0].wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker 0 still waits for the dead worker: {workers.text()}")
        output = workers.outputs[0].read_text()
    assert code == 2, output[-3000:]
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("trainer train: error: training stopped: a worker is gone"), last
    assert "File " not in last  # what happened, not the frames TensorFlow lists
    assert "--resume" in last


MIRRORED = """
import json, sys
from seqdata.tf import import_tensorflow
tf = import_tensorflow()
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from seqdata import open_dataset
from seqdata.read.config import BatchConfig
from trainer.train import TrainConfig, train
data, out = open_dataset(sys.argv[1]), sys.argv[2]
config = TrainConfig(BatchConfig(batch_size=31, seed=3), epochs=1)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
runs = {name: train(f"{out}/{name}", config, data, num_features=5, strategy=s, verbose=0,
                    echo=lambda _: None)
        for name, s in (("one", None), ("mirrored", strategy))}
print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                  "steps": [r.final_step for r in runs.values()],
                  "diff": max(float(np.abs(a - b).max()) for a, b in zip(
                      *(r.model.get_weights() for r in runs.values()), strict=True))}))
"""


def test_mirrored_on_two_devices_trains_as_one(datasets, tmp_path):
    """MirroredStrategy over 2 (logical CPU) devices, batches of an odd size split
    unevenly between them: the weights of one device."""
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(datasets["parquet"]),
                             str(tmp_path)], env=env(), cwd=ROOT, capture_output=True, text=True,
                            timeout=HANG)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["replicas"] == 2
    assert found["steps"][0] == found["steps"][1] > 1
    assert found["diff"] < 2e-5


def test_tf_config_ranks_a_chief_first():
    config = {"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"]},
              "task": {"type": "worker", "index": 1}}
    assert read_tf_config({"TF_CONFIG": json.dumps(config)}) == Placement(2, 3)
    config["task"] = {"type": "chief", "index": 0}
    assert read_tf_config({"TF_CONFIG": json.dumps(config)}) == Placement(0, 3)


@pytest.mark.parametrize("value, needle", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG cannot be read"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG cannot be read (KeyError"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}',
     "at least one worker address"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "task must be a chief or worker of the cluster"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "task must be a chief or worker"),
])
def test_bad_tf_config_is_one_clear_error(value, needle):
    with pytest.raises(ConfigError, match=None) as info:
        read_tf_config({} if value is None else {"TF_CONFIG": value})
    assert needle in str(info.value)


def test_cli_refuses_a_strategy_it_cannot_run(datasets, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    args = ("train", "--data", datasets["hdf5"], "--out", tmp_path / "run")
    assert_one_line_error(run_trainer(*args, "--strategy", "multi-worker"), "TF_CONFIG")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert_one_line_error(run_trainer(*args, "--strategy", "mirrored"),
                          "needs the tensorflow backend")
    assert not (tmp_path / "run").exists()
