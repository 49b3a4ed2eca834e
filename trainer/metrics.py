"""Masked metrics that are exact over a whole epoch.

Keras' weighted ``Mean`` metrics first average each sample over its padded time axis,
so across batches of different widths they weight a batch's timesteps by 1 / its width:
with bucketed batches, short-sequence batches count more. These keep two sums instead,
``sum(w * value)`` and ``sum(w)``, so the result is the mean over every real timestep
seen, whatever the batching.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from trainer.losses import normalized_categorical_crossentropy


class MaskedMean(keras.metrics.Metric):
    """Mean of a per-timestep value over all real (weight > 0) timesteps seen.

    Subclasses define `values`; the per-timestep weights are the sample weights (mask).
    """

    def __init__(self, name: str, dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def values(self, y_true: Any, y_pred: Any) -> Any:
        raise NotImplementedError

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        values = ops.cast(self.values(y_true, y_pred), self.dtype)
        weights = (ops.ones_like(values) if sample_weight is None
                   else ops.broadcast_to(ops.cast(sample_weight, self.dtype),
                                         ops.shape(values)))
        self.total.assign_add(ops.sum(values * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self) -> Any:
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="trainer")
class MaskedAccuracy(MaskedMean):
    """Share of real timesteps whose arg-max class is the label."""

    def __init__(self, name: str = "masked_accuracy", dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def values(self, y_true: Any, y_pred: Any) -> Any:
        return ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1))


@keras.saving.register_keras_serializable(package="trainer")
class MaskedLoss(MaskedMean):
    """Mean cross-entropy (as `trainer.losses`) over real timesteps."""

    def __init__(self, name: str = "masked_loss", dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def values(self, y_true: Any, y_pred: Any) -> Any:
        return normalized_categorical_crossentropy(y_true, y_pred)
