"""The stacked-LSTM model: build it from a `ModelConfig`, compile it, load it safely.

The default is the seed's architecture: LSTM(32) -> LSTM(8) -> Dense(2, sigmoid) over a
``(None, F)`` input, 4,864 + 1,312 + 18 = 6,194 parameters for F = 5. ``Dense`` is applied
to the 3-D tensor directly (the seed's ``TimeDistributed`` crashes in Keras 3 on a dynamic
time axis; a 3-D ``Dense`` is the same layer).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import keras
import numpy as np

from seqdata.checks import check_choice, check_int, check_number
from seqdata.store.atomic import atomic_output
from seqdata.tf import NUM_CLASSES
from trainer.defaults import MAX_LSTM_LAYERS, MAX_LSTM_UNITS
from trainer.errors import ConfigError, ModelFileError, TrainerError
from trainer.losses import MaskedCrossentropy
from trainer.metrics import MaskedAccuracy, MaskedLoss

OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")
MASKED_ACCURACY = "masked_accuracy"
MASKED_LOSS = "masked_loss"


@dataclass(frozen=True)
class ModelConfig:
    """Layer sizes, output activation and optimizer settings of the model.

    Args:
        lstm_units: units of each stacked LSTM layer, input side first: 1 to
            ``MAX_LSTM_LAYERS`` (16) layers of 1 to ``MAX_LSTM_UNITS`` (4096) units
            (`trainer.defaults` says why).
        output_activation: activation of the final ``Dense(2)``.
        learning_rate: Adam's learning rate.

    >>> ModelConfig().lstm_units
    (32, 8)
    """

    lstm_units: tuple[int, ...] = (32, 8)
    output_activation: str = "sigmoid"
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if not isinstance(self.lstm_units, tuple | list):
            raise ConfigError(f"lstm_units must be a tuple of layer sizes, got "
                              f"{self.lstm_units!r}")
        units = tuple(self.lstm_units)
        check_int("len(lstm_units)", len(units), 1, MAX_LSTM_LAYERS, error=ConfigError)
        for i, u in enumerate(units):
            check_int(f"lstm_units[{i}]", u, 1, MAX_LSTM_UNITS, error=ConfigError)
        object.__setattr__(self, "lstm_units", units)
        check_choice("output_activation", self.output_activation, OUTPUT_ACTIVATIONS,
                     error=ConfigError)
        check_number("learning_rate", self.learning_rate, positive=True, error=ConfigError)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"lstm_units": list(self.lstm_units),
                "output_activation": self.output_activation,
                "learning_rate": self.learning_rate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys are rejected."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}, expected some of "
                              f"{sorted(known)}")
        kwargs = dict(data)
        if "lstm_units" in kwargs:
            kwargs["lstm_units"] = tuple(kwargs["lstm_units"])
        return cls(**kwargs)


def build_model(num_features: int, config: ModelConfig | None = None) -> keras.Model:
    """An uncompiled stacked LSTM over inputs ``(batch, time, num_features)``.

    >>> build_model(5).count_params()
    6194
    """
    config = config or ModelConfig()
    check_int("num_features", num_features, 1, error=ConfigError)
    inputs = keras.Input(shape=(None, num_features), name="x")
    hidden = inputs
    for i, units in enumerate(config.lstm_units):
        hidden = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{i}")(hidden)
    outputs = keras.layers.Dense(NUM_CLASSES, activation=config.output_activation,
                                 name="classes")(hidden)
    return keras.Model(inputs, outputs, name="stacked_lstm")


def architecture(num_features: int, config: ModelConfig) -> str:
    """The layers ``build_model(num_features, config)`` makes, in words.

    >>> architecture(5, ModelConfig())
    'LSTM(32) -> LSTM(8) -> Dense(2, sigmoid) over 5 features'
    """
    layers = [f"LSTM({u})" for u in config.lstm_units]
    layers.append(f"Dense({NUM_CLASSES}, {config.output_activation})")
    return f"{' -> '.join(layers)} over {num_features} features"


def architecture_of(model: keras.Model) -> str:
    """The layers of a loaded model, in the words of `architecture`."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        name = type(layer).__name__
        if isinstance(layer, keras.layers.LSTM):
            name = f"LSTM({layer.units})"
        elif isinstance(layer, keras.layers.Dense):
            activation = getattr(layer.activation, "__name__", layer.activation)
            name = f"Dense({layer.units}, {activation})"
        layers.append(name)
    return f"{' -> '.join(layers)} over {num_features_of(model)} features"


OUT_OF_MEMORY_ERRORS = ("ResourceExhaustedError", "OutOfMemoryError")


def _is_out_of_memory(exc: BaseException) -> bool:
    """numpy's ``MemoryError``, TensorFlow's ``ResourceExhaustedError``, PyTorch's
    ``OutOfMemoryError`` or an XLA (JAX) ``RESOURCE_EXHAUSTED`` error."""
    return (isinstance(exc, MemoryError) or type(exc).__name__ in OUT_OF_MEMORY_ERRORS
            or str(exc).startswith("RESOURCE_EXHAUSTED"))


@contextlib.contextmanager
def out_of_memory_is_an_error(what: str) -> Iterator[None]:
    """Turn running out of memory inside the block into one `TrainerError` line, on any
    backend (their errors are long multi-line messages); ``what`` names the task."""
    try:
        yield
    except Exception as exc:
        if not _is_out_of_memory(exc):
            raise
        detail = str(getattr(exc, "message", exc) or type(exc).__name__).strip()
        detail = detail.splitlines()[0] if detail else type(exc).__name__
        raise TrainerError(f"out of memory {what} ({detail[:200]}); use smaller batches "
                           "or a smaller model") from exc


def compile_model(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Compile with Adam, a per-timestep categorical cross-entropy and masked metrics.

    The loss is averaged over the real timesteps of each batch (the per-timestep sample
    weights are the mask), so padded steps add nothing to loss or gradients; see
    `trainer.losses`. The weighted metrics ``masked_loss`` and ``masked_accuracy`` are
    exact means over every real timestep of an epoch (`trainer.metrics`). XLA is off on
    TensorFlow and PyTorch: batch shapes change from batch to batch, and each would
    compile anew. JAX always compiles (once per shape: feed it static shapes).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=MaskedCrossentropy(),
        weighted_metrics=[MaskedLoss(MASKED_LOSS), MaskedAccuracy(MASKED_ACCURACY)],
        jit_compile=keras.backend.backend() == "jax",
    )
    return model


def load_model(path: str | os.PathLike[str], *, compile: bool = True) -> keras.Model:
    """Load a ``.keras`` model with ``safe_mode=True`` (no arbitrary code, no pickle).

    Raises:
        ModelFileError: the file is missing, not a Keras zip archive, or not loadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist (expected a .keras file)")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelFileError(f"model file {path} is not a Keras .keras archive")
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises many types for damaged or foreign archives.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"model file {path} could not be loaded: {detail}") from exc
    shapes = getattr(model, "input_shape", None), getattr(model, "output_shape", None)
    if not all(isinstance(s, tuple) and len(s) == 3 and s[-1] for s in shapes) or (
            shapes[1][-1] != NUM_CLASSES):
        raise ModelFileError(f"model file {path} maps {shapes[0]} to {shapes[1]}, expected "
                             f"(batch, time, features) to (batch, time, {NUM_CLASSES})")
    return model


def save_model(model: keras.Model, path: str | os.PathLike[str], *,
               portable: bool = False) -> Path:
    """Save to ``path`` atomically (a temporary file in the same folder, then replace).

    With ``portable``, the file holds the layers and weights only (no optimizer, loss or
    metrics), so plain ``keras.saving.load_model(path)`` loads it in any process on any
    backend, without importing `trainer`: what a run's final model.keras is.
    Checkpoints keep the optimizer and compile settings, for exact resume.
    """
    if portable:
        # Rebuilt from its config: clone_model would compile the copy like the original.
        clone = keras.Model.from_config(model.get_config())
        clone.set_weights(model.get_weights())
        model = clone
    with atomic_output(Path(path)) as tmp:
        model.save(tmp)
    return Path(path)


def weights_digest(model: keras.Model) -> str:
    """The sha256 of every weight's bytes, in order: equal exactly when the weights are."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def num_features_of(model: keras.Model) -> int:
    """F, the features per timestep the model expects."""
    return int(model.input_shape[-1])


def class1_probability(outputs: np.ndarray) -> np.ndarray:
    """Per-timestep probability of class 1 from the model's 2-way outputs.

    The outputs are normalized the way categorical cross-entropy reads them
    (``out[..., 1] / out.sum(-1)``); for a softmax output that is ``out[..., 1]``.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    total = outputs.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = np.where(total > 0, outputs[..., 1] / total, np.float32(0.5))
    return prob.astype(np.float32)
