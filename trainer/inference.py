"""Evaluation (masked loss and accuracy) and prediction on sequences of any length."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from seqdata.read.config import BatchConfig
from seqdata.read.stream import BatchSource
from seqdata.tf import keras_arrays
from trainer.backend import for_backend
from trainer.defaults import EVAL_BATCH_SIZE
from trainer.errors import InputFileError
from trainer.inputs import as_float32, check_values
from trainer.metrics import MaskedAccuracy, MaskedLoss
from trainer.model import class1_probability


def evaluate(model: keras.Model, source: BatchSource,
             options: BatchConfig | None = None) -> dict[str, Any]:
    """Masked loss and accuracy over one pass of ``source``, overall and by length bucket.

    Every figure is a mean over real timesteps only (the whole pass, not per batch), kept
    by the model's own masked metrics (`trainer.metrics`): one pair per bucket of the
    source's boundaries, the overall figures being their pooled sums. The batches are
    bucketed (``options``, default `EVAL_BATCH_SIZE` sequences), so each holds one bucket.

    Returns:
        ``{"loss", "masked_accuracy", "num_sequences", "num_timesteps", "buckets": [{"bucket",
        "min_length", "max_length", "num_sequences", "num_timesteps", "loss",
        "masked_accuracy"}, ...]}`` with a row per bucket that holds sequences.
    """
    options = for_backend(options or BatchConfig("bucketed", batch_size=EVAL_BATCH_SIZE,
                                                 shuffle=False))
    boundaries = np.asarray(source.boundaries)
    per_bucket: dict[int, _BucketStats] = {}
    for batch in source.batches(options):
        x, one_hot, weights = keras_arrays(batch)
        probs = model.predict_on_batch(_finite_batch(x, batch.ids))
        buckets = np.searchsorted(boundaries, batch.lengths)
        real = batch.ids >= 0  # not a fill row
        for b in np.unique(buckets[real]).tolist():
            rows = (buckets == b) & real
            stats = per_bucket.setdefault(b, _BucketStats())
            stats.update(one_hot, probs, weights * rows[:, None])
            stats.sequences += int(rows.sum())
            stats.timesteps += int(batch.lengths[rows].sum())
    low = int(source.spec.lengths.low)
    rows = [{"bucket": b, "min_length": int(boundaries[b - 1]) + 1 if b else low,
             "max_length": int(boundaries[b]), **per_bucket[b].result()}
            for b in sorted(per_bucket)]
    pooled = _BucketStats.pooled(per_bucket.values())
    return {**pooled, "buckets": rows}


class _BucketStats:
    """The masked metrics of one length bucket, and its sequence and timestep counts."""

    def __init__(self) -> None:
        self.loss, self.accuracy = MaskedLoss(), MaskedAccuracy()
        self.sequences = self.timesteps = 0

    def update(self, y_true: np.ndarray, y_pred: Any, weights: np.ndarray) -> None:
        self.loss.update_state(y_true, y_pred, weights)
        self.accuracy.update_state(y_true, y_pred, weights)

    def sums(self) -> tuple[float, float, float]:
        """(sum of w * loss, sum of w * correct, sum of w)."""
        value = keras.ops.convert_to_numpy
        return (float(value(self.loss.total)), float(value(self.accuracy.total)),
                float(value(self.loss.count)))

    def result(self) -> dict[str, Any]:
        return self.pooled([self])

    @staticmethod
    def pooled(stats: Any) -> dict[str, Any]:
        """Loss and accuracy over the real timesteps of all of ``stats``, and counts."""
        stats = list(stats)
        loss, correct, weight = np.array([s.sums() for s in stats]).reshape(-1, 3).sum(0)
        return {"loss": loss / weight if weight else float("nan"),
                "masked_accuracy": correct / weight if weight else float("nan"),
                "num_sequences": sum(s.sequences for s in stats),
                "num_timesteps": sum(s.timesteps for s in stats)}


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
