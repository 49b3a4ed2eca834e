"""Categorical cross-entropy on the model's outputs as probabilities, on every backend.

Keras 3's TensorFlow backend caches the pre-activation of a ``sigmoid`` output and its
categorical cross-entropy then silently treats it as *softmax* logits, so the stock loss
on the seed's ``Dense(2, sigmoid)`` optimizes softmax(z), not the outputs, and differs from
the JAX/PyTorch backends. These normalize the outputs first (``p = out / out.sum(-1)``,
what Keras 2 and the seed computed), which drops the cached logits: one meaning everywhere,
and the one `trainer.model.class1_probability` reports.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="trainer")
def normalized_categorical_crossentropy(y_true, y_pred):
    """Per-timestep cross-entropy of one-hot ``y_true`` and normalized ``y_pred``."""
    probs = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    return keras.losses.categorical_crossentropy(y_true, probs)


@keras.saving.register_keras_serializable(package="trainer")
class MaskedCrossentropy(keras.losses.Loss):
    """`normalized_categorical_crossentropy` averaged over the real timesteps of a batch:
    ``sum(w * loss) / sum(w)`` with per-timestep weights ``w`` (the mask).

    Under ``tf.distribute`` with several replicas, each replica holds a part of the
    global batch: its loss is its own ``sum(w * loss)`` over the ``sum(w)`` of the whole
    global batch (summed over replicas), and the strategy sums the replicas' gradients.
    So the step is that of the global batch's mean, as on one device, however unevenly
    the real timesteps fall (Keras' own reduction would average the replicas' means).
    """

    def __init__(self, name: str = "masked_crossentropy",
                 reduction: str = "mean_with_sample_weight", dtype: str | None = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return normalized_categorical_crossentropy(y_true, y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is None:
            return super().__call__(y_true, y_pred)
        losses = self.call(y_true, y_pred)
        weights = ops.cast(sample_weight, losses.dtype)
        return ops.divide_no_nan(ops.sum(losses * weights), _global_sum(ops.sum(weights)))


def _global_sum(value):
    """``value`` summed over the replicas of the current ``tf.distribute`` step (itself
    outside one, or with one replica)."""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce("SUM", tf.stop_gradient(value))
