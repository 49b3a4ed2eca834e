"""The tf.data bridge: seqdata batches as a ``tf.data.Dataset`` for TensorFlow and Keras.

Each element is ``(x, one_hot_y, sample_weight)`` with the mask as per-timestep float32
weights, so padded steps add nothing to loss, metrics or gradients (``Masking(0.0)`` is not
used: real inputs can be 0). The signature is explicit, with a ``None`` time axis, never
inferred from the first batches. TensorFlow is imported on first use, not with this module.

>>> import seqdata, seqdata.tf, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = seqdata.build_dataset(d, seqdata.LagSumSpec(num_sequences=40), progress=False)
>>> data = seqdata.tf.dataset(d, mode="padded", batch_size=8, seed=1)
>>> x, y, weights = next(iter(data))
>>> x.shape[0], y.shape[-1], weights.shape == x.shape[:2]
(8, 2, True)
>>> data.element_spec[0].shape.as_list()
[None, None, 5]

`dataset` is the one call for TensorFlow users; `tf_dataset` takes an open dataset and a
`BatchConfig`; `trainer` uses `to_tf_dataset` on its own batch stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from seqdata.read.batch import Batch
from seqdata.read.config import BatchConfig, as_config
from seqdata.read.dataset import open_dataset
from seqdata.read.stream import BatchSource, BatchStream

if TYPE_CHECKING:
    import tensorflow as tf

NUM_CLASSES = 2  # labels are 0 or 1
KerasArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def import_tensorflow() -> ModuleType:
    """Import TensorFlow (and initialize its devices) without its native start-up noise.

    Unless ``TF_CPP_MIN_LOG_LEVEL`` is set below 2 (it defaults to 2 here), file
    descriptor 2 points to /dev/null meanwhile: TensorFlow's native libraries write INFO
    lines and CUDA probe errors there before its log level applies. Python exceptions
    still surface normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        quiet = int(os.environ["TF_CPP_MIN_LOG_LEVEL"]) >= 2
    except ValueError:
        quiet = True
    saved = os.dup(2) if quiet else -1
    if quiet:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
        return tf
    finally:
        if quiet:
            os.dup2(saved, 2)
            os.close(saved)


def keras_arrays(batch: Batch) -> KerasArrays:
    """``(x, one_hot_y, sample_weight)`` of a batch: float32 (B,L,F), (B,L,2), (B,L)."""
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[batch.y]
    weights = batch.mask.astype(np.float32)
    return np.asarray(batch.x, dtype=np.float32), one_hot, weights


def keras_signature(num_features: int) -> tuple[tf.TensorSpec, tf.TensorSpec, tf.TensorSpec]:
    """The element signature; batch and time axes are ``None``."""
    tf = import_tensorflow()
    return (tf.TensorSpec((None, None, num_features), tf.float32, name="x"),
            tf.TensorSpec((None, None, NUM_CLASSES), tf.float32, name="y"),
            tf.TensorSpec((None, None), tf.float32, name="sample_weight"))


def keras_batches(batches: Iterable[Batch]) -> Callable[[], Iterator[KerasArrays]]:
    """A generator function for ``from_generator``: each call iterates ``batches`` anew."""
    return lambda: map(keras_arrays, batches)


def to_tf_dataset(generator: Callable[[], Iterator[KerasArrays]], num_features: int,
                  num_batches: int | None = None) -> tf.data.Dataset:
    """A prefetched ``tf.data.Dataset`` over ``generator()`` with the explicit signature.

    Args:
        generator: called once per iteration of the dataset.
        num_features: F.
        num_batches: if known, the number of elements of one iteration (Keras then knows
            where an epoch of validation or evaluation data ends).
    """
    tf = import_tensorflow()
    dataset = tf.data.Dataset.from_generator(generator,
                                             output_signature=keras_signature(num_features))
    if num_batches is not None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    return dataset.prefetch(tf.data.AUTOTUNE)


def tf_dataset(source: BatchSource, config: BatchConfig, *,
               repeat: bool = False) -> tf.data.Dataset:
    """The batches of ``source`` (one epoch, or every epoch with ``repeat``) as a
    ``tf.data.Dataset`` of ``(x, one_hot_y, sample_weight)``, ready for ``model.fit``.

    The batches are those of ``source.batches(config)``, in the same order; with
    ``repeat``, epochs ``config.epoch + 1``, ... follow, as in `BatchStream`.
    """
    stream = BatchStream(source, config, start=config.start, repeat=repeat)
    size = None if repeat else max(stream.epoch_size(config.epoch) - config.start, 0)
    return to_tf_dataset(keras_batches(stream), _num_features(source), size)


def dataset(source: BatchSource | str | os.PathLike[str],
            config: BatchConfig | str = "bucketed", /, *, repeat: bool = False,
            **options: Any) -> tf.data.Dataset:
    """The batches of a dataset directory (or open `seqdata.Dataset`) as a prefetched
    ``tf.data.Dataset`` of ``(x, one_hot_y, sample_weight)``: float32 ``(B, None, F)``,
    ``(B, None, 2)`` and ``(B, None)``, the mask as per-timestep weights.

    ``config`` and ``options`` are those of `Dataset.batches` (a `BatchConfig`, or a mode
    and its fields: ``dataset(d, "bucketed", max_timesteps=50_000, seed=0)``), so the
    batches are those of ``Dataset.batches`` with the same options, in the same order.
    The element's time axis is ``None`` in the signature (every batch may have its own
    length), as in `trainer`; with ``repeat``, epochs follow each other endlessly.
    """
    if isinstance(source, str | os.PathLike):
        source = open_dataset(source)
    return tf_dataset(source, as_config(config, **options), repeat=repeat)


def _num_features(source: Any) -> int:
    spec = getattr(source, "spec", None)
    if spec is None:
        raise TypeError(f"source must be a seqdata Dataset (with a spec), got {source!r}")
    return int(spec.num_features)
