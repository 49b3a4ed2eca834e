"""Train the seed's LSTM (LSTM 32 -> LSTM 8 -> Dense 2) in plain JAX on a seqdata dataset.

Batches come from `seqdata.jax.batches`, whose static shapes (one per length bucket, short
batches filled with fully masked rows) let the jitted training step compile at most once
per bucket over a whole run. The loss is a per-timestep cross-entropy over the real
(masked) steps; the optimizer is a hand-written Adam.

    python examples/jax_lstm.py DATA [--epochs 1] [--batch-size 1000 | --max-timesteps N]
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp

import seqdata
import seqdata.jax

SIZES = (32, 8)  # LSTM units, as the seed's model
CLASSES = 2


def init_params(key: jax.Array, features: int) -> dict:
    """Glorot-uniform weights, zero biases (forget gate bias 1)."""
    def dense(key, fan_in, fan_out):
        limit = math.sqrt(6 / (fan_in + fan_out))
        return jax.random.uniform(key, (fan_in, fan_out), jnp.float32, -limit, limit)

    keys = jax.random.split(key, len(SIZES) + 1)
    params, width = {"lstm": []}, features
    for k, units in zip(keys[:-1], SIZES, strict=True):
        bias = jnp.zeros(4 * units).at[units:2 * units].set(1.0)
        params["lstm"].append({"w": dense(k, width + units, 4 * units), "b": bias})
        width = units
    params["out"] = {"w": dense(keys[-1], width, CLASSES), "b": jnp.zeros(CLASSES)}
    return params


def lstm(layer: dict, xs: jax.Array) -> jax.Array:
    """One LSTM layer over time-major inputs (L, B, F) -> (L, B, H). Padding comes after
    the real steps, so it never reaches their outputs and needs no masking here."""
    units = layer["b"].shape[0] // 4

    def step(carry, x):
        h, c = carry
        i, f, g, o = jnp.split(jnp.concatenate([x, h], -1) @ layer["w"] + layer["b"], 4, -1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((xs.shape[1], units), xs.dtype)
    return jax.lax.scan(step, (zeros, zeros), xs)[1]


def logits_of(params: dict, x: jax.Array) -> jax.Array:
    """(B, L, F) -> (B, L, CLASSES)."""
    hs = jnp.swapaxes(x, 0, 1)
    for layer in params["lstm"]:
        hs = lstm(layer, hs)
    return jnp.swapaxes(hs, 0, 1) @ params["out"]["w"] + params["out"]["b"]


def loss_and_stats(params: dict, x, y, mask):
    """Masked mean cross-entropy, and (loss sum, correct steps, real steps)."""
    logits = logits_of(params, x)
    labels = y.astype(jnp.int32)
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], -1)[..., 0]
    real = mask.sum()
    total = (losses * mask).sum()
    correct = ((logits.argmax(-1) == labels) & mask).sum()
    return total / jnp.maximum(real, 1), (total, correct, real)


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7):
    """(init, update) of Adam, as pure functions over parameter trees."""
    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return {"m": zeros, "v": zeros, "t": jnp.zeros((), jnp.int32)}

    def update(grads, state, params):
        t = state["t"] + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], grads)
        scale = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        params = jax.tree.map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), params, m, v)
        return params, {"m": m, "v": v, "t": t}

    return init, update


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a seqdata dataset directory")
    parser.add_argument("--epochs", type=int, default=1)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--batch-size", type=int, help="sequences per batch (default 1000)")
    size.add_argument("--max-timesteps", type=int, help="padded timesteps per batch instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args(argv)

    ds = seqdata.open_dataset(args.data)
    init, update = adam(args.learning_rate)
    params = init_params(jax.random.key(args.seed), ds.num_features)
    state = init(params)
    compiles = []

    @jax.jit
    def train_step(params, state, x, y, mask):
        compiles.append(x.shape)  # Python runs here only while tracing, i.e. compiling
        grads, stats = jax.grad(loss_and_stats, has_aux=True)(params, x, y, mask)
        params, state = update(grads, state, params)
        return params, state, stats

    for epoch in range(args.epochs):
        loss = correct = real = steps = 0
        for b in seqdata.jax.batches(ds, batch_size=args.batch_size,
                                     max_timesteps=args.max_timesteps, seed=args.seed,
                                     epoch=epoch):
            params, state, stats = train_step(params, state, b["x"], b["y"], b["mask"])
            loss, correct, real = loss + stats[0], correct + stats[1], real + stats[2]
            steps += 1
        real = max(int(real), 1)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {float(loss) / real:.4f} "
              f"accuracy {int(correct) / real:.4f} steps {steps} "
              f"compiles {len(compiles)} buckets {len(ds.boundaries)}", flush=True)


if __name__ == "__main__":
    main()
