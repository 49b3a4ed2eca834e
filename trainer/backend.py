"""The Keras backend the trainer runs on (TensorFlow, JAX or PyTorch), and what each
needs from the data.

Keras picks its backend from ``KERAS_BACKEND`` or ``~/.keras/keras.json`` when it is
first imported. The JAX and PyTorch backends need no TensorFlow (the data reaches them
through `seqdata.keras`, not tf.data); JAX compiles a step once per input shape, so it
gets static-shape batches (`BatchConfig.static_shapes`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from seqdata.read.config import BatchConfig

BACKENDS = ("tensorflow", "jax", "torch")


def configured_backend() -> str:
    """The backend Keras will use, read as Keras reads it, without importing Keras."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        name = json.loads((home / "keras.json").read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else "tensorflow"


def load_keras() -> ModuleType:
    """Import Keras on its configured backend, and TensorFlow quietly first if it is the
    backend or installed at all: Keras then imports it on any backend (to seed it, to
    save models), and its native libraries would print their start-up lines."""
    if configured_backend() == "tensorflow" or importlib.util.find_spec("tensorflow"):
        from seqdata.tf import import_tensorflow

        import_tensorflow()
    import keras

    return keras


def backend() -> str:
    """The backend of the imported Keras."""
    import keras

    return keras.backend.backend()


def for_backend(config: BatchConfig) -> BatchConfig:
    """``config`` with what the current backend needs: static shapes on JAX.

    One-length batches (``same_length``, the seed preset's) keep their config: they
    already have one shape per length (and a full count with ``drop_remainder``).
    """
    if backend() == "jax" and not config.static_shapes and not config.same_length:
        return replace(config, static_shapes=True)
    return config

