"""The Keras 3 bridge: seqdata batches for ``fit`` / ``evaluate`` on any backend.

On the TensorFlow backend the batches go through tf.data (`seqdata.tf`), with the
explicit ``None``-time-axis signature. On JAX and PyTorch they go through a
``keras.utils.PyDataset`` and TensorFlow is never imported: each element is the same
``(x, one_hot_y, sample_weight)`` triple as numpy arrays, converted on a loader thread a
few batches ahead (`seqdata.read.prefetch`). JAX compiles a step once per input shape:
give it a config with ``static_shapes=True`` (one shape per bucket).

Keras is imported on first use, not with this module.

>>> import seqdata, seqdata.keras, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = seqdata.build_dataset(d, seqdata.LagSumSpec(num_sequences=40), progress=False)
>>> ds = seqdata.open_dataset(d)
>>> batches = list(ds.batches("padded", batch_size=8))
>>> data = seqdata.keras.keras_input(batches, 5, backend="jax")
>>> x, y, weights = data[0]
>>> len(data), x.shape[0], y.shape[-1], weights.shape == x.shape[:2]
(5, 8, 2, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from functools import cache
from typing import Any

from seqdata.read.batch import Batch
from seqdata.read.prefetch import prefetch
from seqdata.tf import KerasArrays, keras_arrays, keras_batches, to_tf_dataset


def keras_input(batches: Iterable[Batch], num_features: int, num_batches: int | None = None,
                *, backend: str | None = None) -> Any:
    """What ``model.fit`` / ``model.evaluate`` take on ``backend`` (default: Keras'
    current one): a ``tf.data.Dataset`` on TensorFlow, a ``PyDataset`` elsewhere.

    Args:
        batches: re-iterable batches (a `BatchStream`, or a list); each pass over the
            Keras input iterates them anew.
        num_features: F.
        num_batches: the number of batches of one pass (default: ``len(batches)`` if it
            has one), or None for an endless stream (then ``fit`` needs
            ``steps_per_epoch``).
    """
    if num_batches is None and isinstance(batches, Sized):
        num_batches = len(batches)
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend == "tensorflow":
        return to_tf_dataset(keras_batches(batches), num_features, num_batches)
    return _batch_sequence_class()(batches, num_batches)


@cache
def _batch_sequence_class() -> type:
    import keras

    class BatchSequence(keras.utils.PyDataset):
        """``batches`` as a PyDataset that Keras reads in order, index after index.

        Item 0 starts a new pass over ``batches``; any other index must be the one after
        the previous (Keras reads a PyDataset in order with one worker and no
        multiprocessing, which is how this one is made).
        """

        def __init__(self, batches: Iterable[Batch], num_batches: int | None) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self._batches, self._num_batches = batches, num_batches
            self._pass: Iterator[KerasArrays] | None = None
            self._next = 0

        @property
        def num_batches(self) -> int | None:
            return self._num_batches

        def __len__(self) -> int:
            if self._num_batches is None:
                raise TypeError("an endless batch stream has no length")
            return self._num_batches

        def __getitem__(self, index: int) -> KerasArrays:
            if index == 0:
                self.close()
                self._pass = prefetch(self._batches, keras_arrays, depth=4,
                                      name="seqdata-keras-prefetch")
            elif self._pass is None or index != self._next:
                raise IndexError(f"batches are read in order: asked for {index}, expected "
                                 f"{self._next}")
            self._next = index + 1
            try:
                return next(self._pass)
            except StopIteration:
                raise IndexError(f"the batches ended at {index}, before the "
                                 f"{self._num_batches} announced") from None

        def close(self) -> None:
            """Stop the loader thread of the current pass, if any."""
            if self._pass is not None:
                self._pass.close()
                self._pass = None

    return BatchSequence
