"""Keras 3 on every backend: the trainer on JAX and PyTorch without TensorFlow (it cannot
be imported in those processes), and a run's model.keras loadable by plain Keras in any
process, on any backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from seqdata import LagSumSpec, build_dataset
from tests.helpers import ROOT

BACKENDS = ("tensorflow", "jax", "torch")

# Prepended to every script on a backend other than TensorFlow: TensorFlow cannot be
# imported, as on a machine without it (Keras imports it when it is installed).
NO_TENSORFLOW = textwrap.dedent("""\
    import sys
    class Hide:
        def __init__(self, finder):
            self.finder = finder
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                return None
            return self.finder.find_spec(name, path, target)
        def __getattr__(self, attr):
            return getattr(self.finder, attr)
    sys.meta_path[:] = [Hide(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
""")

# Runs `trainer CMD ...` in-process and says whether TensorFlow was loaded.
CLI = textwrap.dedent("""\
    import sys
    from trainer.cli import main
    code = main(sys.argv[1:])
    print("tensorflow loaded:", "tensorflow" in sys.modules)
    sys.exit(code)
""")

# Trains a tiny run with the library and predicts in the same process.
TRAIN = textwrap.dedent("""\
    import sys, numpy as np, seqdata
    from seqdata import BatchConfig
    from trainer.train import TrainConfig, train
    data, out, x = sys.argv[1:]
    ds = seqdata.open_dataset(data)
    result = train(out, TrainConfig(BatchConfig(max_timesteps=3000, seed=3), epochs=1), ds,
                   num_features=5, verbose=0, echo=lambda line: None)
    np.save(out + "/trained_here.npy", result.model.predict(np.load(x), verbose=0))
""")

# Loads models with nothing but Keras and predicts.
LOAD = textwrap.dedent("""\
    import sys, numpy as np, keras
    x = np.load(sys.argv[1])
    for path in sys.argv[2:]:
        np.save(path + ".loaded.npy", keras.saving.load_model(path).predict(x, verbose=0))
    print("trainer imported:", any(m.split(".")[0] == "trainer" for m in sys.modules))
""")


def run_python(code: str, *args, backend: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": backend,
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    if backend != "tensorflow":
        code = NO_TENSORFLOW + code
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("backends")
    for name, seed in (("train", 1), ("heldout", 2)):
        build_dataset(base / name, LagSumSpec(num_sequences=240, seed=seed, chunk_size=80),
                      num_buckets=4, progress=False)
    return base


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_evaluate_predict_run_without_tensorflow(data, tmp_path, backend):
    run = tmp_path / "run"
    out = run_python(CLI, "train", "--data", data / "train", "--validation-data",
                     data / "heldout", "--out", run, "--epochs", "2", "--max-timesteps", "3000",
                     "--quiet", backend=backend).stdout
    assert "tensorflow loaded: False" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["complete"] and metrics["epochs_completed"] == 2
    final = metrics["final"]
    assert list((run / "logs" / "validation").glob("events.out.tfevents.*"))
    # JAX trains on static shapes (one per bucket), recorded in the run's config.
    batching = json.loads((run / "config.json").read_text())["train"]["batching"]
    assert batching.get("static_shapes", False) == (backend == "jax")

    # The masked metrics are exact means over real timesteps, whatever the batching: the
    # evaluation of model.keras equals the last epoch's validation figures.
    out = run_python(CLI, "evaluate", "--model", run / "model.keras", "--data",
                     data / "heldout", "--json", backend=backend).stdout
    assert "tensorflow loaded: False" in out
    result = json.loads(out.splitlines()[0])
    assert result["masked_accuracy"] == pytest.approx(final["val_masked_accuracy"], abs=1e-6)
    assert result["loss"] == pytest.approx(final["val_masked_loss"], rel=1e-4)

    probs = tmp_path / "p.npy"
    out = run_python(CLI, "predict", "--model", run / "model.keras", "--input",
                     data / "heldout", "--output", probs, backend=backend).stdout
    assert "tensorflow loaded: False" in out
    p = np.load(probs)
    assert p.shape[0] == 240 and np.isfinite(p).sum() == result["num_timesteps"]
    assert ((p[np.isfinite(p)] >= 0) & (p[np.isfinite(p)] <= 1)).all()


def test_model_keras_loads_in_plain_keras_on_every_backend(data, tmp_path):
    x = np.random.default_rng(0).random((3, 17, 5), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    models = {}
    for backend in BACKENDS:
        run = tmp_path / backend
        run_python(TRAIN, data / "train", run, tmp_path / "x.npy", backend=backend)
        models[backend] = run / "model.keras"
    for backend in BACKENDS:
        out = run_python(LOAD, tmp_path / "x.npy", *models.values(), backend=backend).stdout
        assert "trainer imported: False" in out
        for trained_on, path in models.items():
            loaded = np.load(f"{path}.loaded.npy")
            here = np.load(path.parent / "trained_here.npy")
            assert loaded.shape == (3, 17, 2)
            np.testing.assert_allclose(loaded, here, atol=1e-5,
                                       err_msg=f"trained on {trained_on}, loaded on {backend}")
