"""The tf.data bridge: seqdata `Batch` iterators -> ``tf.data.Dataset`` for Keras.

Each element is ``(x, one_hot_y, sample_weight)`` with the mask as per-timestep float32
weights, so padded steps add nothing to loss, metrics or gradients (``Masking(0.0)`` is not
used: real inputs can be 0). The signature is explicit, with a ``None`` time axis, never
inferred from the first batches.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from typing import Any, Protocol

import numpy as np
import tensorflow as tf

from seqdata.batch import Batch
from seqdata.batching import BatchConfig
from trainer.errors import TrainerError
from trainer.model import NUM_CLASSES

KerasArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


class NoBatchesError(TrainerError):
    """An epoch of the data has no batches with the options given."""

    def __init__(self, epoch: int, options: BatchConfig) -> None:
        super().__init__(f"the data yields no batches in epoch {epoch} with {options} "
                         "(too few sequences for the batch size with drop_remainder?)")


class BatchSource(Protocol):
    """What trainer needs of a seqdata ``Dataset``."""

    def batches(self, **options: Any) -> Iterator[Batch]: ...

    def num_batches(self, **options: Any) -> int: ...


def keras_arrays(batch: Batch) -> KerasArrays:
    """``(x, one_hot_y, sample_weight)`` of a batch: float32 (B,L,F), (B,L,2), (B,L)."""
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[batch.y]
    weights = batch.mask.astype(np.float32)
    return np.asarray(batch.x, dtype=np.float32), one_hot, weights


def keras_signature(num_features: int) -> tuple[tf.TensorSpec, tf.TensorSpec, tf.TensorSpec]:
    """The element signature; batch and time axes are ``None``."""
    return (tf.TensorSpec((None, None, num_features), tf.float32, name="x"),
            tf.TensorSpec((None, None, NUM_CLASSES), tf.float32, name="y"),
            tf.TensorSpec((None, None), tf.float32, name="sample_weight"))


class BatchStream:
    """The batches of consecutive epochs as one numbered stream, with per-batch stats.

    Batch ``g`` of the stream is batch ``g - start`` after the first ``start`` batches of
    epochs 0, 1, 2, ... (epoch ``e`` from ``batches(..., epoch=e)``), so a Keras epoch of
    ``S`` steps that starts at ``k * S`` sees the same batches whether or not the run was
    resumed. The real and total step counts of every yielded batch are kept until taken
    with `take_stats` (tf.data prefetches ahead, so counting at consumption would be wrong).

    Args:
        source: the dataset.
        options: batching options.
        start: index of the first batch to yield.
        repeat: continue into the next epochs; otherwise stop after the first epoch.
    """

    def __init__(self, source: BatchSource, options: BatchConfig, *, start: int = 0,
                 repeat: bool = True) -> None:
        self.source = source
        self.options = options
        self.start = start
        self.repeat = repeat
        self.error: BaseException | None = None
        self._stats: dict[int, tuple[int, int]] = {}
        self._ids: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def _epoch(self, epoch: int, start: int = 0) -> dict[str, Any]:
        return asdict(replace(self.options, epoch=epoch, start=start))

    def epoch_size(self, epoch: int) -> int:
        """Number of batches of data epoch ``epoch``."""
        return int(self.source.num_batches(**self._epoch(epoch)))

    def _batches(self) -> Iterator[Batch]:
        epoch, skip = 0, self.start
        while True:
            size = self.epoch_size(epoch)
            if size < 1:
                raise NoBatchesError(epoch, self.options)
            if skip < size:
                break
            skip -= size
            epoch += 1
        for e in itertools.count(epoch) if self.repeat else (epoch,):
            yield from self.source.batches(**self._epoch(e, start=skip))
            skip = 0

    def __call__(self) -> Iterator[KerasArrays]:
        """Generator for ``tf.data.Dataset.from_generator``."""
        try:
            for index, batch in enumerate(self._batches(), start=self.start):
                with self._lock:
                    self._stats[index] = (batch.num_timesteps, int(batch.mask.size))
                    self._ids[index] = batch.ids
                yield keras_arrays(batch)
        except Exception as exc:  # re-raised by the caller: tf.data would bury it
            self.error = exc
            raise

    def take_ids(self, index: int) -> np.ndarray:
        """The sequence ids of batch ``index`` (forgotten once taken)."""
        with self._lock:
            return self._ids.pop(index)

    def forget_ids(self, stop: int) -> None:
        """Drop the ids of batches before ``stop`` (when no log takes them)."""
        with self._lock:
            for index in [i for i in self._ids if i < stop]:
                del self._ids[index]

    def take_stats(self, first: int, stop: int) -> tuple[int, int]:
        """Sum of (real, total) timesteps of batches ``first .. stop-1``; forgets them."""
        real = total = 0
        with self._lock:
            for index in range(first, stop):
                r, t = self._stats.pop(index, (0, 0))
                real, total = real + r, total + t
        return real, total


def to_tf_dataset(generator: Callable[[], Iterator[KerasArrays]], num_features: int,
                  num_batches: int | None = None) -> tf.data.Dataset:
    """A prefetched ``tf.data.Dataset`` over ``generator()`` with the explicit signature.

    Args:
        generator: called once per iteration of the dataset.
        num_features: F.
        num_batches: if known, the number of elements of one iteration (Keras then knows
            where an epoch of validation or evaluation data ends).

    >>> ds = to_tf_dataset(lambda: iter(()), 5)
    >>> ds.element_spec[0].shape.as_list()
    [None, None, 5]
    """
    dataset = tf.data.Dataset.from_generator(generator,
                                             output_signature=keras_signature(num_features))
    if num_batches is not None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    return dataset.prefetch(tf.data.AUTOTUNE)
