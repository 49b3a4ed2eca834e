"""Training rows of `benchmarks/bench.py`: the trainer's input paths on the CPU.

Real timesteps per second of the seed's model fed by bucketed and padded batches from
shards, by the same batches already in memory (so the input's share of each step shows),
and by the seed answer's own approach: a Python generator making the data in the loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from seqdata import BatchConfig, BatchStream, Dataset
from seqdata.tf import KerasArrays, import_tensorflow, keras_arrays, keras_batches, to_tf_dataset

import_tensorflow()  # quietly, before Keras loads it with its native start-up lines
from trainer.model import ModelConfig, build_model, compile_model  # noqa: E402


def _fit_seconds(batches, num_features: int, steps: int) -> float:
    """Wall time of ``steps`` training steps after a short warm-up (tracing excluded)."""
    import keras

    keras.utils.set_random_seed(0)
    model = compile_model(build_model(num_features, ModelConfig()))
    # A fresh tf.data pipeline for each fit: reusing one made the second fit wait ~4.6 s
    # at its end for the first one's prefetching generator to wind down.
    model.fit(to_tf_dataset(batches, num_features), steps_per_epoch=3, epochs=1, verbose=0)
    dataset = to_tf_dataset(batches, num_features)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def seed_lengths(count: int, seed: int = 1) -> np.ndarray:
    """The lengths of the first ``count`` batches of `seed_generator`."""
    return np.random.default_rng(seed).integers(10, 100, size=count)


def seed_generator(batch_size: int = 1000, seed: int = 1) -> Iterator[KerasArrays]:
    """The seed answer's data: one length per batch, made in the loop (labels on a copy)."""
    lengths, values = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    while True:
        length = int(lengths.integers(10, 100))
        x = values.random((batch_size, length, 5))
        y = x[:, :, 0].copy()
        for i in range(1, 5):
            y[:, i:] += x[:, :-i, i]
        one_hot = np.eye(2, dtype=np.float32)[(y > 2.5).astype(np.int64)]
        yield x.astype(np.float32), one_hot, np.ones((batch_size, length), np.float32)


def bench_training(dataset: Dataset, steps: int, batch_size: int = 1000) -> list[dict]:
    """Rows for the benchmark table (real timesteps/s; input wait as a share of a step)."""
    rows = []
    f = dataset.num_features
    for mode in ("bucketed", "padded"):
        config = BatchConfig(mode=mode, batch_size=batch_size, seed=0)
        stream = BatchStream(dataset, config, track=True)
        seconds = _fit_seconds(keras_batches(stream), f, steps)
        # Each fit restarts the stream: the timed steps trained its batches 0..steps-1.
        real, total = stream.take_stats(0, steps)
        first = [keras_arrays(b) for b in dataset.batches(config)][:steps]
        in_memory = _fit_seconds(lambda first=first: iter(first), f, steps)
        rows.append({"benchmark": "train (CPU)", "case": f"trainer, {mode}, from shards",
                     "seconds": seconds, "timesteps_per_s": real / seconds,
                     "padding": 1 - real / total,
                     "input_wait": max(0.0, 1 - in_memory / seconds)})
    seconds = _fit_seconds(seed_generator, f, steps)
    real = batch_size * int(seed_lengths(steps).sum())
    rows.append({"benchmark": "train (CPU)", "case": "seed's generator (data made in loop)",
                 "seconds": seconds, "timesteps_per_s": real / seconds, "padding": 0.0})
    return rows
