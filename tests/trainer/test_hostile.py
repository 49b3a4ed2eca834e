"""Hostile input to ``trainer``: another dataset at a resumed run's path, a foreign
checkpoint, absurd model sizes, .npy files that lie or hold NaN, inf or complex values.

Every CLI case ends with exit status 2 and one line on stderr naming the thing, no
traceback, and nothing already written changed (docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import seqdata
from seqdata.read.config import BatchConfig
from tests.helpers import assert_one_line_error, run_trainer, snapshot
from trainer.errors import InputFileError, RunDirError, TrainerError

TINY = ("--mode", "bucketed", "--batch-size", "16", "--steps-per-epoch", "2", "--quiet")


def build(path: Path, seed: int, threshold: float = 2.5) -> str:
    """A small dataset at ``path`` (replacing one there); its manifest checksum."""
    spec = seqdata.LagSumSpec(num_sequences=96, seed=seed, threshold=threshold, chunk_size=64)
    seqdata.build_dataset(path, spec, overwrite=True, progress=False)
    return seqdata.open_dataset(path).checksum


def train(data: Path, run: Path, *extra: str) -> None:
    code, _, err = run_trainer("train", "--data", data, "--out", run, *TINY, *extra)
    assert code == 0, err


@pytest.fixture(scope="module")
def two_runs(datasets, tmp_path_factory) -> tuple[Path, Path]:
    """A run with a checkpoint every step, and another of a smaller model, trained once
    for the module; tests work on copies."""
    base = tmp_path_factory.mktemp("runs")
    train(datasets["hdf5"], base / "run", "--epochs", "1", "--checkpoint-every", "1")
    train(datasets["hdf5"], base / "other", "--epochs", "1", "--lstm-units", "16,4")
    return base / "run", base / "other"


def copies(runs: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(runs[0], run)
    shutil.copytree(runs[1], other)
    return run, other


def stamps_and_checkpoints(run: Path) -> tuple[list[str], list[str]]:
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    return ([n.removesuffix(".json") for n in names if n.endswith(".json")],
            [n.removesuffix(".keras") for n in names if n.endswith(".keras")])


# --- resume: the same data, the run's own checkpoints ---------------------------------

def test_resume_refuses_a_dataset_regenerated_at_the_same_path(tmp_path):
    data, held_out, run = tmp_path / "data", tmp_path / "held_out", tmp_path / "run"
    first, first_val = build(data, seed=1), build(held_out, seed=2)
    train(data, run, "--epochs", "1", "--validation-data", held_out)
    recorded = json.loads((run / "config.json").read_text())["data"]
    assert recorded["train_checksum"] == first
    assert recorded["validation_checksum"] == first_val
    before = snapshot(run)

    second = build(data, seed=3, threshold=1.0)  # same path, another seed and threshold
    line = assert_one_line_error(
        run_trainer("train", "--data", data, "--out", run, *TINY, "--epochs", "2",
                "--validation-data", held_out, "--resume"),
        f"--data {data}", "holds another dataset", second, first,
        "resume with the same data or start a new run")
    assert line.index(second) < line.index(first)  # found, then recorded
    assert snapshot(run) == before

    build(data, seed=1)  # the original again, but other validation data
    other_val = build(held_out, seed=4)
    assert_one_line_error(
        run_trainer("train", "--data", data, "--out", run, *TINY, "--epochs", "2",
                "--validation-data", held_out, "--resume"),
        f"--validation-data {held_out}", "holds another dataset", other_val, first_val)
    assert snapshot(run) == before

    build(held_out, seed=2)  # both as trained: the run continues
    code, out, err = run_trainer("train", "--data", data, "--out", run, *TINY, "--epochs", "2",
                             "--validation-data", held_out, "--resume")
    assert code == 0, err
    assert "after epoch 1" in out


def test_resume_refuses_another_dataset_from_the_library(h5_dataset, pq_dataset, tmp_path):
    from trainer.train import TrainConfig
    from trainer.train import train as train_run

    config = TrainConfig(BatchConfig(batch_size=64), epochs=1, steps_per_epoch=2)

    def run(dataset, **kwargs):
        return train_run(tmp_path / "run", config, dataset, num_features=5, verbose=0,
                         echo=lambda line: None, **kwargs)

    run(h5_dataset)
    before = snapshot(tmp_path / "run")
    # The same sequences stored as Parquet: another manifest, so another dataset.
    with pytest.raises(RunDirError, match=f"source holds another dataset.*manifest checksum "
                                          f"{pq_dataset.checksum}, the run recorded "
                                          f"{h5_dataset.checksum}"):
        run(pq_dataset, resume=True)
    assert snapshot(tmp_path / "run") == before


def test_resume_refuses_a_foreign_checkpoint(datasets, two_runs, tmp_path):
    data = datasets["hdf5"]
    run, other = copies(two_runs, tmp_path)
    stamps, checkpoints = stamps_and_checkpoints(run)
    assert stamps == checkpoints == ["step-00000001", "step-00000002"]  # each stamped
    stamp = json.loads((run / "checkpoints" / "step-00000002.json").read_text())
    assert stamp["run_id"] == json.loads((run / "config.json").read_text())["run_id"]
    assert stamp["step"] == 2 and stamp["model"].startswith("LSTM(32) -> LSTM(8)")

    # Dropped in as the newest, without a stamp: this run did not write it.
    foreign = run / "checkpoints" / "step-00000009.keras"
    shutil.copy(other / "checkpoints" / "step-00000002.keras", foreign)
    before = snapshot(run)
    resume = ("train", "--data", data, "--out", run, *TINY, "--epochs", "2",
              "--checkpoint-every", "1", "--resume")
    assert_one_line_error(run_trainer(*resume), str(foreign), "no stamp step-00000009.json",
                          "did not write it", "move it out of")
    assert snapshot(run) == before

    # With the other run's stamp: written by another run.
    other_stamp = json.loads((other / "checkpoints" / "step-00000002.json").read_text())
    (run / "checkpoints" / "step-00000009.json").write_text(
        json.dumps({**other_stamp, "step": 9}))
    before = snapshot(run)
    assert_one_line_error(run_trainer(*resume), str(foreign), "written by another run",
                          other_stamp["run_id"])
    assert snapshot(run) == before

    # Moved out, the run resumes from its own newest checkpoint; a stamp left without its
    # checkpoint (a kill between the two writes) is ignored, then pruned.
    foreign.unlink()
    (run / "checkpoints" / "step-00000009.json").unlink()
    (run / "checkpoints" / "step-00000007.json").write_text(json.dumps({**stamp, "step": 7}))
    code, out, err = run_trainer(*resume)
    assert code == 0, err
    assert "after epoch 1" in out
    stamps, checkpoints = stamps_and_checkpoints(run)
    assert stamps == checkpoints == ["step-00000002", "step-00000003", "step-00000004"]


def test_a_run_from_before_checksums_and_stamps_resumes_and_checks_the_model(datasets,
                                                                             two_runs,
                                                                             tmp_path):
    data = datasets["hdf5"]
    run, other = copies(two_runs, tmp_path)
    # Make it a run as written before this change: no run id, checksums or stamps.
    config = json.loads((run / "config.json").read_text())
    del config["run_id"]
    del config["data"]["train_checksum"], config["data"]["validation_checksum"]
    (run / "config.json").write_text(json.dumps(config))
    for stamp in (run / "checkpoints").glob("*.json"):
        stamp.unlink()

    # Nothing tells whose a stamp-less checkpoint is, but its model must be the run's.
    foreign = run / "checkpoints" / "step-00000009.keras"
    shutil.copy(other / "checkpoints" / "step-00000002.keras", foreign)
    before = snapshot(run)
    resume = ("train", "--data", data, "--out", run, *TINY, "--epochs", "2", "--resume")
    assert_one_line_error(run_trainer(*resume), str(foreign),
                          "holds LSTM(16) -> LSTM(4) -> Dense(2, sigmoid) over 5 features",
                          "the run's model is LSTM(32) -> LSTM(8)")
    assert snapshot(run) == before

    foreign.unlink()
    code, out, err = run_trainer(*resume)  # an unknown checksum is not checked
    assert code == 0, err
    assert "after epoch 1" in out
    resumed = json.loads((run / "config.json").read_text())["data"]
    assert resumed["train_checksum"] == seqdata.open_dataset(data).checksum


# --- sizes and inputs, refused before anything is allocated ---------------------------

@pytest.mark.parametrize(("units", "needle"), [
    ("40000", "expected layer sizes in 1..4096"),
    (",".join(["8"] * 17), "expected at most 16 layer sizes, got 17"),
])
def test_model_sizes_beyond_the_limits_are_refused(datasets, tmp_path, units, needle):
    run = tmp_path / "run"
    assert_one_line_error(run_trainer("train", "--data", datasets["hdf5"], "--out", run, *TINY,
                                  "--lstm-units", units), "--lstm-units", needle)
    assert not run.exists()


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    from io import BytesIO

    out = BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return out.getvalue()


def write_input(path: Path, case: str) -> None:
    """A hostile .npy file."""
    x = np.random.default_rng(0).random((2, 7, 5))
    if case == "claims 186 GiB":
        path.write_bytes(npy_header((10_000, 1_000_000, 5)) + b"\0" * 80)
    elif case == "truncated":
        np.save(path, x.astype(np.float32))
        path.write_bytes(path.read_bytes()[:-4])
    elif case == "too many values":  # 1 GiB of uint8, a sparse file: the size matches
        header = npy_header((1, 2**15 + 1, 2**15), "|u1")
        with open(path, "wb") as f:
            f.write(header)
            f.truncate(len(header) + (2**15 + 1) * 2**15)
    elif case == "NaN":
        x[1, 3, 2] = np.nan
        np.save(path, x)
    elif case == "inf":
        x[0, 6, 0] = -np.inf
        np.save(path, x.astype(np.float32))
    elif case == "beyond float32":
        x[1, 0, 4] = 1e300
        np.save(path, x)
    elif case == "complex":
        np.save(path, x + 1j)
    elif case == "npz":
        np.savez(path.with_suffix(""), x=x)
        path.with_suffix(".npz").rename(path)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from trainer.model import build_model, save_model

    return save_model(build_model(5), tmp_path_factory.mktemp("model") / "m.keras")


@pytest.mark.parametrize(("case", "needles"), [
    ("claims 186 GiB", ("declares float32 of shape (10000, 1000000, 5)",
                        "200,000,000,000 bytes", "holds 80 bytes")),
    ("truncated", ("declares float32 of shape (2, 7, 5)", "holds 276 bytes")),
    ("too many values", ("1,073,774,592 values", "more than the 1,073,741,824")),
    ("NaN", ("holds NaN", "index (1, 3, 2)", "expected finite real numbers")),
    ("inf", ("holds inf", "index (0, 6, 0)")),
    ("beyond float32", ("values too large for float32", "index (1, 0, 4)")),
    ("complex", ("complex values (complex128)", "expected real numbers")),
    ("npz", ("an .npz archive",)),
])
def test_predict_refuses_a_hostile_npy_before_loading_it(model_file, tmp_path, case, needles):
    x, out = tmp_path / "x.npy", tmp_path / "p.npy"
    write_input(x, case)
    out.write_bytes(b"an earlier prediction")
    assert_one_line_error(run_trainer("predict", "--model", model_file, "--input", x, "--output",
                                  out, "--overwrite"), f"--input {x}", *needles)
    assert out.read_bytes() == b"an earlier prediction"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy", "x.npy"]


def test_predict_array_refuses_what_is_not_finite_real(model_file):
    from trainer.inference import predict_array
    from trainer.model import load_model

    model = load_model(model_file, compile=False)
    x = np.zeros((3, 4, 5), np.float32)
    assert predict_array(model, x.astype(np.int64)).shape == (3, 4)  # ints are real
    x[2, 1, 0] = np.nan
    with pytest.raises(InputFileError, match=r"x holds NaN \(the first at index \(2, 1, 0\)"):
        predict_array(model, x)
    with pytest.raises(InputFileError, match=r"complex values \(complex64\)"):
        predict_array(model, np.zeros((4, 5), np.complex64))


def test_running_out_of_memory_is_one_line():
    import tensorflow as tf

    from trainer.model import out_of_memory_is_an_error

    expected = r"^out of memory training LSTM\(40000\) \(OOM when allocating tensor\); use"
    with (pytest.raises(TrainerError, match=expected) as info,
          out_of_memory_is_an_error("training LSTM(40000)")):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor\n"
                                                           "  [[node lstm]]")
    assert "\n" not in str(info.value)
