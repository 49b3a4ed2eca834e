"""The ``trainer`` command end to end, in subprocesses, on tiny real datasets."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from seqdata import LagSumSpec, UniformLengths, build_dataset, open_dataset
from tests.helpers import assert_one_line_error, run_trainer, snapshot

BUCKETED = ("--mode", "bucketed", "--batch-size", "32")


def read_history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def weights(path: Path) -> list[np.ndarray]:
    return keras.saving.load_model(path, compile=False, safe_mode=True).get_weights()


@pytest.fixture(scope="module")
def long_data(tmp_path_factory) -> Path:
    """Held-out sequences all of length 150, longer than any trained on (10..99)."""
    out = tmp_path_factory.mktemp("long") / "data"
    build_dataset(out, LagSumSpec(num_sequences=24, seed=99, lengths=UniformLengths(150, 150)),
                  progress=False)
    return out


@pytest.fixture(scope="module")
def bucketed_run(tmp_path_factory, datasets, long_data) -> tuple[Path, tuple[int, str, str]]:
    run = tmp_path_factory.mktemp("runs") / "bucketed"
    result = run_trainer("train", "--data", datasets["hdf5"], "--out", run, *BUCKETED,
                     "--epochs", "2", "--validation-data", long_data)
    return run, result


def test_train_bucketed_writes_the_run(bucketed_run):
    run, (code, out, err) = bucketed_run
    assert code == 0, err
    assert "Traceback" not in err
    for name in ("model.keras", "history.csv", "metrics.json", "curves.png", "config.json"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps = json.loads((run / "metrics.json").read_text())["steps_per_epoch"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"step-{steps:08d}.json", f"step-{steps:08d}.keras",  # one per epoch, stamped
        f"step-{2 * steps:08d}.json", f"step-{2 * steps:08d}.keras"]
    assert list((run / "logs" / "train").glob("events.out.tfevents.*"))
    assert list((run / "logs" / "validation").glob("events.out.tfevents.*"))
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    rows = read_history(run)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    for key in ("loss", "masked_accuracy", "val_loss", "val_masked_accuracy",
                "timesteps_per_sec", "padding_fraction"):
        assert np.isfinite(float(rows[-1][key])), key
    assert 0.0 < float(rows[-1]["padding_fraction"]) < 0.5
    assert float(rows[-1]["timesteps_per_sec"]) > 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["complete"] and metrics["epochs_completed"] == 2
    assert metrics["final"]["loss"] == pytest.approx(float(rows[-1]["loss"]))
    assert "epoch 2/2: loss" in out and "real timesteps/s" in out and "padding" in out
    assert str(run / "model.keras") in out and str(run / "logs") in out


def test_evaluate_prints_masked_loss_and_accuracy(bucketed_run, long_data):
    run, _ = bucketed_run
    code, out, err = run_trainer("evaluate", "--model", run / "model.keras", "--data", long_data,
                             "--json", "--batch-size", "5")
    assert code == 0, err
    result = json.loads(out)
    assert result["num_sequences"] == 24 and result["num_timesteps"] == 24 * 150
    # Masked accuracy is a mean over all real steps: independent of the batching.
    val_accuracy = float(read_history(run)[-1]["val_masked_accuracy"])
    assert result["masked_accuracy"] == pytest.approx(val_accuracy, abs=1e-5)
    assert 0 < result["loss"] < 5
    code, out, err = run_trainer("evaluate", "--model", run / "model.keras", "--data", long_data)
    assert code == 0, err
    assert "masked loss" in out and "masked accuracy" in out


def test_evaluate_reports_each_length_bucket(bucketed_run, datasets, tmp_path):
    run, _ = bucketed_run
    code, out, err = run_trainer("evaluate", "--model", run / "model.keras", "--data",
                                 datasets["hdf5"], "--json")
    assert code == 0, err
    result = json.loads(out)
    ds = open_dataset(datasets["hdf5"])
    rows = result["buckets"]
    assert [r["bucket"] for r in rows] == [b for b, n in enumerate(ds.bucket_sequences) if n]
    assert [r["num_sequences"] for r in rows] == [int(n) for n in ds.bucket_sequences if n]
    assert sum(r["num_timesteps"] for r in rows) == result["num_timesteps"] == ds.num_timesteps
    # Each bucket's accuracy, recomputed independently from `predict`'s probabilities.
    code, _, err = run_trainer("predict", "--model", run / "model.keras", "--input",
                               datasets["hdf5"], "--output", tmp_path / "p.npy")
    assert code == 0, err
    probs, everything = np.load(tmp_path / "p.npy"), ds.read_all()
    order = np.argsort(everything.ids)
    lengths = np.diff(everything.offsets)[order]
    for row in rows:
        correct = total = 0
        for i in np.flatnonzero((lengths >= row["min_length"]) & (lengths <= row["max_length"])):
            s = everything.offsets[order[i]]
            y = everything.y[s:s + lengths[i]]
            correct += int(((probs[i, :lengths[i]] > 0.5) == (y == 1)).sum())
            total += int(lengths[i])
        assert row["num_timesteps"] == total
        assert row["masked_accuracy"] == pytest.approx(correct / total, abs=1e-6)
    pooled = sum(r["masked_accuracy"] * r["num_timesteps"] for r in rows) / ds.num_timesteps
    assert result["masked_accuracy"] == pytest.approx(pooled, abs=1e-6)
    code, out, err = run_trainer("evaluate", "--model", run / "model.keras", "--data",
                                 datasets["hdf5"])
    assert code == 0, err
    assert out.count("\n") == 2 + len(rows)  # overall, header, a line per bucket


def test_predict_npy_of_any_length(bucketed_run, tmp_path):
    run, _ = bucketed_run
    x = np.random.default_rng(0).random((3, 300, 5), np.float32)  # longer than trained
    np.save(tmp_path / "many.npy", x)
    np.save(tmp_path / "one.npy", x[1])
    code, _, err = run_trainer("predict", "--model", run / "model.keras", "--input",
                           tmp_path / "many.npy", "--output", tmp_path / "many_p.npy")
    assert code == 0, err
    code, _, err = run_trainer("predict", "--model", run / "model.keras", "--input",
                           tmp_path / "one.npy", "--output", tmp_path / "one_p.npy")
    assert code == 0, err
    many, one = np.load(tmp_path / "many_p.npy"), np.load(tmp_path / "one_p.npy")
    assert many.shape == (3, 300) and one.shape == (300,)
    assert many.dtype == np.float32 and ((many >= 0) & (many <= 1)).all()
    np.testing.assert_allclose(many[1], one, rtol=1e-5, atol=1e-6)


def test_predict_a_dataset_pads_with_nan(bucketed_run, datasets, tmp_path):
    run, _ = bucketed_run
    out = tmp_path / "p.npy"
    code, _, err = run_trainer("predict", "--model", run / "model.keras", "--input",
                           datasets["parquet"], "--output", out, "--batch-size", "64")
    assert code == 0, err
    probs = np.load(out)
    from seqdata import open_dataset

    data = open_dataset(datasets["parquet"])
    lengths = np.zeros(data.num_sequences, np.int64)
    for batch in data.batches("padded", batch_size=100):
        lengths[batch.ids] = batch.lengths
    assert probs.shape == (data.num_sequences, lengths.max())
    np.testing.assert_array_equal((~np.isnan(probs)).sum(1), lengths)


def test_train_padded_with_a_timestep_budget(datasets, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_trainer("train", "--data", datasets["parquet"], "--out", run, "--mode",
                           "padded", "--max-timesteps", "3000", "--epochs", "1", "--quiet")
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())["train"]["batching"]
    assert config["mode"] == "padded" and config["max_timesteps"] == 3000
    assert config["batch_size"] is None
    assert float(read_history(run)[0]["padding_fraction"]) > 0.1  # lengths mixed


def test_resume_continues_exactly_and_cycles_past_one_pass(datasets, tmp_path):
    # 20 steps an epoch over ~12 batches a pass: epochs run into the next pass's batches.
    # A constant rate: a resumed run keeps its checkpoint's schedule, so with a decay, one
    # of 1 epoch extended to 2 is not a run of 2 (docs/RELIABILITY.md).
    data = ("--data", datasets["hdf5"], *BUCKETED, "--quiet", "--schedule", "constant")
    common = (*data, "--steps-per-epoch", "20")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, _, err = run_trainer("train", *common, "--out", straight, "--epochs", "2")
    assert code == 0, err
    code, _, err = run_trainer("train", *common, "--out", resumed, "--epochs", "1")
    assert code == 0, err
    code, out, err = run_trainer("train", *common, "--out", resumed, "--epochs", "2", "--resume")
    assert code == 0, err
    assert "resuming" in out and "after epoch 1" in out
    assert [r["loss"] for r in read_history(resumed)] == [r["loss"]
                                                         for r in read_history(straight)]
    for a, b in zip(weights(straight / "model.keras"), weights(resumed / "model.keras"),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Different options cannot resume the run.
    before = snapshot(resumed)
    assert_one_line_error(run_trainer("train", *data, "--steps-per-epoch", "7", "--out",
                              resumed, "--epochs", "3", "--resume"), "steps_per_epoch")
    assert snapshot(resumed) == before


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(datasets, tmp_path):
    common = ("--data", datasets["hdf5"], *BUCKETED, "--quiet", "--steps-per-epoch", "3",
              "--schedule", "constant")  # 2 epochs extended to 3 equal 3 only at a constant rate
    run, straight = tmp_path / "run", tmp_path / "straight"
    code, _, err = run_trainer("train", *common, "--out", run, "--epochs", "2")
    assert code == 0, err
    checkpoints = sorted((run / "checkpoints").glob("*.keras"))
    assert len(checkpoints) == 2
    latest = checkpoints[-1]
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    code, out, err = run_trainer("train", *common, "--out", run, "--epochs", "3", "--resume")
    assert code == 0, err
    assert "warning" in err and latest.name in err and "falling back" in err
    assert "after epoch 1" in out
    assert [int(r["epoch"]) for r in read_history(run)] == [1, 2, 3]
    # Epochs 2 and 3 were trained again from epoch 1's weights: the same as straight through.
    code, _, err = run_trainer("train", *common, "--out", straight, "--epochs", "3")
    assert code == 0, err
    for a, b in zip(weights(straight / "model.keras"), weights(run / "model.keras"),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_preset_seed_trains_like_the_seed(datasets, tmp_path):
    run = tmp_path / "run"
    # Too few sequences of each length for the seed's 1000: a clear error, nothing written.
    assert_one_line_error(run_trainer("train", "--preset", "seed", "--data", datasets["hdf5"],
                              "--out", run), "no batches", "drop_remainder")
    assert not run.exists()
    code, _, err = run_trainer("train", "--preset", "seed", "--data", datasets["hdf5"], "--out",
                           run, "--batch-size", "2", "--epochs", "1", "--steps-per-epoch", "3")
    assert code == 0, err
    train = json.loads((run / "config.json").read_text())["train"]
    assert train["batching"] == {"mode": "bucketed", "batch_size": 2, "max_timesteps": None,
                                 "seed": 0, "epoch": 0, "shuffle": True,
                                 "pad_to_bucket": False, "drop_remainder": True,
                                 "same_length": True, "window_shards": 2, "shuffle_block": 32,
                                 "read_ahead": True, "start": 0}
    assert train["model"] == {"lstm_units": [32, 8], "output_activation": "sigmoid",
                              "learning_rate": 0.001}
    assert train["steps_per_epoch"] == 3 and train["epochs"] == 1  # explicit options win
    assert float(read_history(run)[0]["padding_fraction"]) == 0.0  # one length a batch


def test_refuses_a_non_empty_run_directory(bucketed_run, datasets):
    run, _ = bucketed_run
    before = snapshot(run)
    assert_one_line_error(run_trainer("train", "--data", datasets["hdf5"], "--out", run),
                      str(run), "not empty", "--resume", "--overwrite")
    assert snapshot(run) == before


def test_overwrite_replaces_a_run(datasets, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("stale")
    (run / "notes.txt").write_text("mine")
    code, _, err = run_trainer("train", "--data", datasets["hdf5"], "--out", run, *BUCKETED,
                           "--epochs", "1", "--overwrite", "--quiet")
    assert code == 0, err
    assert len(read_history(run)) == 1 and (run / "notes.txt").read_text() == "mine"


def test_bad_model_files_and_inputs_are_one_line_errors(bucketed_run, datasets, tmp_path):
    run, _ = bucketed_run
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    assert_one_line_error(run_trainer("evaluate", "--model", bad, "--data", datasets["hdf5"]),
                      str(bad), "not a Keras")
    assert_one_line_error(run_trainer("evaluate", "--model", tmp_path / "nope.keras", "--data",
                              datasets["hdf5"]), "nope.keras", "does not exist")
    np.save(tmp_path / "three.npy", np.zeros((2, 9, 3), np.float32))
    assert_one_line_error(run_trainer("predict", "--model", run / "model.keras", "--input",
                              tmp_path / "three.npy", "--output", tmp_path / "p.npy"),
                      "3 features", "expects 5")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_one_line_error(run_trainer("predict", "--model", run / "model.keras", "--input",
                              tmp_path / "objects.npy", "--output", tmp_path / "p.npy"),
                      "objects.npy", "not a plain .npy")
    assert not (tmp_path / "p.npy").exists()


def test_damaged_data_stops_training_cleanly(datasets, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(datasets["hdf5"], data)
    shard = sorted(data.glob("data/shard-*"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    assert_one_line_error(run_trainer("train", "--data", data, "--out", tmp_path / "run", *BUCKETED,
                              "--epochs", "1"), shard.name, "damaged")
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_the_best_epoch_is_kept_and_a_target_accuracy_stops_the_run(datasets, long_data,
                                                                      tmp_path):
    run = tmp_path / "run"
    code, _, err = run_trainer("train", "--data", datasets["hdf5"], "--out", run, *BUCKETED,
                               "--epochs", "4", "--validation-data", datasets["parquet"],
                               "--learning-rate", "0.02", "--schedule", "cosine")
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    accuracies = [row["val_masked_accuracy"] for row in metrics["history"]]
    best = metrics["best"]
    assert best["epoch"] == 1 + int(np.argmax(accuracies)) and best["model"] == "best.keras"
    assert not metrics["stopped_at_accuracy"]
    # best.keras is that epoch's model: its evaluation gives that epoch's accuracy.
    code, out, err = run_trainer("evaluate", "--model", run / "best.keras", "--data",
                                 datasets["parquet"], "--json")
    assert code == 0, err
    assert json.loads(out)["masked_accuracy"] == pytest.approx(max(accuracies), abs=1e-6)

    # A target reached at the first epoch ends the run there, complete.
    stopped = tmp_path / "stopped"
    code, _, err = run_trainer("train", "--data", datasets["hdf5"], "--out", stopped,
                               *BUCKETED, "--epochs", "4", "--validation-data",
                               datasets["parquet"], "--stop-at-accuracy", "0.01")
    assert code == 0, err
    metrics = json.loads((stopped / "metrics.json").read_text())
    assert metrics["complete"] and metrics["stopped_at_accuracy"]
    assert metrics["epochs_completed"] == 1 and (stopped / "model.keras").is_file()
    assert_one_line_error(run_trainer("train", "--data", datasets["hdf5"], "--out",
                                      tmp_path / "none", "--stop-at-accuracy", "0.9"),
                          "--stop-at-accuracy", "validation")
    assert_one_line_error(run_trainer("train", "--data", datasets["hdf5"], "--out",
                                      tmp_path / "none", "--schedule", "constant",
                                      "--warmup-steps", "3"), "--schedule cosine")


def test_no_option_trains_the_default_recipe(datasets, tmp_path):
    from trainer.defaults import PRESETS

    recipe = PRESETS["default"]
    code, _, err = run_trainer("train", "--data", datasets["hdf5"], "--out", tmp_path / "r",
                               "--quiet")
    assert code == 0, err
    train = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert (train["batching"]["mode"], train["batching"]["max_timesteps"],
            train["batching"]["batch_size"]) == (recipe["mode"], recipe["max_timesteps"], None)
    assert (train["epochs"], train["model"]["learning_rate"]) == \
        (recipe["epochs"], recipe["learning_rate"])
    assert train["schedule"] == {"name": recipe["schedule"],
                                 "warmup_steps": recipe["warmup_steps"],
                                 "final_fraction": recipe["final_fraction"]}
    rates = [row["learning_rate"] for row in read_history(tmp_path / "r")]
    assert float(rates[-1]) < float(rates[0])  # decayed


def test_train_and_evaluate_read_a_dataset_url(bucketed_run, datasets, tmp_path, monkeypatch):
    """--data takes an fsspec URL (here file://): the run records the URL, and evaluate
    of the URL equals evaluate of the directory it names."""
    monkeypatch.setenv("SEQDATA_CACHE", str(tmp_path / "cache"))
    url = datasets["hdf5"].as_uri()
    run = tmp_path / "run"
    code, _, err = run_trainer("train", "--data", url, "--out", run, *BUCKETED, "--epochs", "1",
                               "--steps-per-epoch", "2", "--quiet")
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["data"]["train"] == url
    assert (run / "model.keras").is_file()
    found = [run_trainer("evaluate", "--model", bucketed_run[0] / "model.keras", "--data", data,
                         "--json") for data in (url, datasets["hdf5"])]
    assert [code for code, _, _ in found] == [0, 0], found
    by_url, by_path = (json.loads(out) for _, out, _ in found)
    assert by_url.pop("data") == url
    by_path.pop("data")
    assert by_url == by_path
