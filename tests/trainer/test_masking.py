"""Padded steps count for nothing: loss, gradients and metrics of a padded batch equal
those of its sequences run without padding; training works on batches whose length
changes from batch to batch."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from seqdata.tf import to_tf_dataset
from trainer.model import build_model, compile_model

LENGTHS = (3, 12, 7, 1, 9)
F = 5


def sequences(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.random((n, F), np.float32), rng.integers(0, 2, n).astype(np.int64))
            for n in LENGTHS]


def padded(seqs, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded x (padding ``fill``), one-hot y and mask weights."""
    width = max(len(x) for x, _ in seqs)
    x = np.full((len(seqs), width, F), fill, np.float32)
    y = np.zeros((len(seqs), width, 2), np.float32)
    w = np.zeros((len(seqs), width), np.float32)
    for i, (xi, yi) in enumerate(seqs):
        x[i, :len(xi)], y[i, np.arange(len(yi)), yi], w[i, :len(xi)] = xi, 1.0, 1.0
    return x, y, w


def loss_and_grads(model, x, y, w):
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True), sample_weight=w)
    grads = tape.gradient(loss, model.trainable_variables)
    return float(loss), [g.numpy() for g in grads]


def seeded_model():
    keras.utils.set_random_seed(0)
    return compile_model(build_model(F))


def test_padded_loss_and_gradients_equal_the_unpadded_sequences():
    model, seqs = seeded_model(), sequences()
    loss, grads = loss_and_grads(model, *padded(seqs))
    # Each sequence alone, at its exact length, weighted by its share of the real steps.
    total = sum(LENGTHS)
    expected_loss = 0.0
    expected_grads = [np.zeros_like(g) for g in grads]
    for seq, n in zip(seqs, LENGTHS, strict=True):
        loss_i, grads_i = loss_and_grads(model, *padded([seq]))
        expected_loss += loss_i * n / total
        for acc, g in zip(expected_grads, grads_i, strict=True):
            acc += g * (n / total)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_padding_values_do_not_matter():
    model, seqs = seeded_model(), sequences(1)
    loss, grads = loss_and_grads(model, *padded(seqs, fill=0.0))
    noisy_loss, noisy_grads = loss_and_grads(model, *padded(seqs, fill=123.0))
    assert noisy_loss == loss
    for a, b in zip(grads, noisy_grads, strict=True):
        np.testing.assert_array_equal(a, b)


def test_masked_accuracy_and_loss_count_real_steps_only():
    model, seqs = seeded_model(), sequences(2)
    x, y, w = padded(seqs, fill=0.5)
    result = model.evaluate(x, y, sample_weight=w, batch_size=len(seqs), verbose=0,
                            return_dict=True)
    probs = model.predict_on_batch(x)
    real = w.astype(bool)
    accuracy = (probs.argmax(-1) == y.argmax(-1))[real].mean()
    normalized = np.clip(probs / probs.sum(-1, keepdims=True), 1e-7, 1 - 1e-7)
    cross_entropy = -(y * np.log(normalized)).sum(-1)[real].mean()
    np.testing.assert_allclose(result["masked_accuracy"], accuracy, rtol=1e-6)
    np.testing.assert_allclose(result["masked_loss"], cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(result["loss"], cross_entropy, rtol=1e-5)


def test_masked_metrics_are_exact_across_batches_of_different_widths():
    model = seeded_model()
    wide, narrow = padded(sequences(3)), padded(sequences(4)[3:4] + sequences(5)[:1])
    assert wide[0].shape[1] != narrow[0].shape[1]
    result = model.evaluate(to_tf_dataset(lambda: iter((wide, narrow)), F, 2), verbose=0,
                            return_dict=True)
    correct, cross_entropy, real = [], [], []
    for x, y, w in (wide, narrow):
        probs = model.predict_on_batch(x)
        mask = w.astype(bool)
        correct.append((probs.argmax(-1) == y.argmax(-1))[mask])
        normalized = np.clip(probs / probs.sum(-1, keepdims=True), 1e-7, 1 - 1e-7)
        cross_entropy.append(-(y * np.log(normalized)).sum(-1)[mask])
        real.append(mask.sum())
    np.testing.assert_allclose(result["masked_accuracy"], np.concatenate(correct).mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(result["masked_loss"], np.concatenate(cross_entropy).mean(),
                               rtol=1e-5)


def test_training_on_batches_whose_length_changes():
    rng = np.random.default_rng(3)
    lengths = [10, 57, 3, 99, 24, 200]

    def generate():
        for n in lengths:
            seqs = [(rng.random((int(k), F), np.float32), rng.integers(0, 2, int(k)))
                    for k in rng.integers(max(1, n - 5), n + 1, size=8)]
            yield padded(seqs)

    model = seeded_model()
    dataset = to_tf_dataset(generate, F, len(lengths))
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert 0.0 <= history.history["masked_accuracy"][0] <= 1.0
    assert model.predict_on_batch(np.zeros((1, 300, F), np.float32)).shape == (1, 300, 2)
