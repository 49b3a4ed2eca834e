"""Evaluation (masked loss and accuracy) and prediction on sequences of any length."""

from __future__ import annotations

import keras
import numpy as np

from seqdata.keras import keras_input
from seqdata.read.config import BatchConfig
from seqdata.read.stream import BatchSource, BatchStream
from trainer.backend import for_backend
from trainer.defaults import EVAL_BATCH_SIZE
from trainer.errors import InputFileError
from trainer.inputs import as_float32, check_values
from trainer.model import (
    MASKED_ACCURACY,
    MASKED_LOSS,
    class1_probability,
    compile_model,
    num_features_of,
)


def evaluate(model: keras.Model, source: BatchSource,
             options: BatchConfig | None = None) -> dict[str, float]:
    """Masked loss and accuracy over one pass of ``source``.

    Both are means over real timesteps only (the whole pass, not per batch). The model is
    re-compiled (see `trainer.model.compile_model`); its weights are unchanged.

    Returns:
        ``{"loss": ..., "masked_accuracy": ..., "num_sequences": ..., "num_timesteps": ...}``
    """
    options = for_backend(options or BatchConfig(mode="padded", batch_size=EVAL_BATCH_SIZE))
    compile_model(model)
    stream = BatchStream(source, options, repeat=False)
    steps = stream.epoch_size(options.epoch)
    result = model.evaluate(keras_input(stream, num_features_of(model), steps),
                            verbose=0, return_dict=True)
    real, _ = stream.take_stats(0, steps)
    return {"loss": float(result[MASKED_LOSS]),
            "masked_accuracy": float(result[MASKED_ACCURACY]),
            "num_sequences": int(getattr(source, "num_sequences", -1)),
            "num_timesteps": real}


def predict_array(model: keras.Model, x: np.ndarray,
                  batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """Probability of class 1 for each timestep of equal-length sequences.

    Args:
        x: real numbers (L, F) for one sequence or (B, L, F); any L >= 1. Each value must
            be finite as float32.

    Returns:
        float32 (L,) or (B, L).

    Raises:
        InputFileError: ``x`` holds complex, non-numeric or non-finite values.
    """
    check_values("x", x)  # before the first batch: all of it or nothing is predicted
    single = x.ndim == 2
    batch = x[None] if single else x
    parts = [_predict_batch(model, as_float32("x", batch[i:i + batch_size]))
             for i in range(0, len(batch), batch_size)]
    out = (np.concatenate(parts) if parts
           else np.zeros(batch.shape[:2], np.float32))
    return out[0] if single else out


def predict_dataset(model: keras.Model, source: BatchSource,
                    batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """Per-timestep probability of class 1 for every sequence of a dataset.

    Returns:
        float32 (N, max_length): row ``i`` is the sequence with the i-th smallest id;
        steps past a sequence's length are NaN.

    Raises:
        InputFileError: a sequence holds a value that is not finite.
    """
    options = for_backend(BatchConfig(mode="padded", batch_size=batch_size))
    parts = [(b.ids[real], np.where(b.mask, _predict_batch(model, _finite_batch(b.x, b.ids)),
                                    np.float32(np.nan))[real])
             for b in source.batches(options) if (real := b.ids >= 0).any()]
    ids = np.concatenate([i for i, _ in parts]) if parts else np.zeros(0, np.int64)
    row_of = np.empty(len(ids), np.int64)
    row_of[np.argsort(ids, kind="stable")] = np.arange(len(ids))
    out = np.full((len(ids), max((p.shape[1] for _, p in parts), default=0)), np.nan,
                  dtype=np.float32)
    start = 0
    for batch_ids, probs in parts:
        out[row_of[start:start + len(batch_ids)], :probs.shape[1]] = probs
        start += len(batch_ids)
    return out


def _finite_batch(x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """A dataset's batch as float32, refused (naming the sequence) if not finite."""
    x = np.asarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row, step, _ = np.argwhere(bad)[0]
        raise InputFileError(f"the dataset's sequence {int(ids[row])} holds {x[bad][0]} at "
                             f"step {int(step)}, expected finite real numbers")
    return x


def _predict_batch(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return class1_probability(model.predict_on_batch(np.asarray(x, dtype=np.float32)))
