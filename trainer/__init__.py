"""trainer: the Keras application on top of `seqdata.tf` (model, losses, metrics,
training, evaluation, CLI). The tf.data bridge itself is `seqdata.tf`.

Names are imported lazily, so that ``import trainer`` (and the CLI's argument checks) do
not load TensorFlow.

>>> import trainer
>>> trainer.ModelConfig().lstm_units
(32, 8)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelConfig": "trainer.model",
    "build_model": "trainer.model",
    "compile_model": "trainer.model",
    "load_model": "trainer.model",
    "save_model": "trainer.model",
    "TrainConfig": "trainer.train",
    "TrainResult": "trainer.train",
    "train": "trainer.train",
    "evaluate": "trainer.inference",
    "predict_array": "trainer.inference",
    "predict_dataset": "trainer.inference",
    "TrainerError": "trainer.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
