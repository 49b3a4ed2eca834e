"""The model: the seed's architecture and size, configuration, safe saving and loading."""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest

from trainer.errors import ConfigError, ModelFileError
from trainer.model import (
    ModelConfig,
    build_model,
    class1_probability,
    compile_model,
    load_model,
    save_model,
)


def test_seed_model_has_6194_parameters_and_dynamic_time_axis():
    model = build_model(5)
    assert model.count_params() == 6194
    assert [layer.count_params() for layer in model.layers[1:]] == [4864, 1312, 18]
    assert [layer.__class__.__name__ for layer in model.layers[1:]] == ["LSTM", "LSTM", "Dense"]
    assert model.input_shape == (None, None, 5)
    assert model.output_shape == (None, None, 2)
    for length in (1, 37, 300):
        out = model.predict_on_batch(np.zeros((2, length, 5), np.float32))
        assert out.shape == (2, length, 2)
        assert ((out > 0) & (out < 1)).all()  # sigmoid


def test_summary_shows_the_seed_parameter_counts():
    lines: list[str] = []
    build_model(5).summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    for count in ("4,864", "1,312", "18", "6,194"):
        assert count in text


def test_layer_sizes_activation_and_learning_rate_are_configurable():
    config = ModelConfig(lstm_units=(16, 8, 4), output_activation="softmax", learning_rate=0.01)
    model = compile_model(build_model(3, config), config.learning_rate)
    assert [layer.units for layer in model.layers[1:-1]] == [16, 8, 4]
    out = model.predict_on_batch(np.random.default_rng(0).random((2, 5, 3), np.float32))
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lstm_units": ()}, "lstm_units"),
    ({"lstm_units": (32, 0)}, r"lstm_units\[1\] must be an integer in 1..4096, got 0"),
    ({"lstm_units": (40000,)}, r"lstm_units\[0\] must be an integer in 1..4096, got 40000"),
    ({"lstm_units": (8,) * 17}, r"len\(lstm_units\) must be an integer in 1..16, got 17"),
    ({"lstm_units": 32}, "lstm_units must be a tuple of layer sizes, got 32"),
    ({"output_activation": "relu"}, "output_activation must be one of sigmoid, softmax"),
    ({"learning_rate": 0.0}, "learning_rate must be a finite positive number, got 0.0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite positive"),
])
def test_model_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**kwargs)


def test_model_config_round_trips_through_a_dict():
    config = ModelConfig(lstm_units=(4,), output_activation="softmax", learning_rate=0.5)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"units": [3]})


def test_class1_probability_normalizes_like_categorical_crossentropy():
    out = np.array([[0.2, 0.6], [0.5, 0.5], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(class1_probability(out), [0.75, 0.5, 0.5])


def test_save_is_atomic_and_load_round_trips(tmp_path):
    model = compile_model(build_model(5))
    path = save_model(model, tmp_path / "m.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
    loaded = load_model(path, compile=False)
    x = np.random.default_rng(1).random((3, 11, 5), np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-6)


def test_load_model_refuses_what_is_not_a_safe_keras_model(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.keras")
    text = tmp_path / "text.keras"
    text.write_text("not a model")
    with pytest.raises(ModelFileError, match=r"not a Keras \.keras archive"):
        load_model(text)
    foreign = tmp_path / "foreign.keras"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ModelFileError, match="could not be loaded"):
        load_model(foreign)
    inputs = keras.Input((None, 5))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    unsafe.save(tmp_path / "lambda.keras")
    with pytest.raises(ModelFileError, match="could not be loaded"):
        load_model(tmp_path / "lambda.keras")
