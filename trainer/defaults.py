"""Defaults and limits the CLI checks before TensorFlow loads (the modules that use them
import it)."""

from typing import Any

# What `trainer train` runs with no option (the default recipe, chosen by measurement:
# docs/RESULTS.md, section 3) and with `--preset seed`. Options given explicitly win.
PRESETS: dict[str, dict[str, Any]] = {
    # Bucketed batches of at most 16,384 padded timesteps (~300 sequences of similar
    # length), Adam at 0.01 with 100 steps of warm-up and a cosine decay to 1% of it,
    # 8 passes over the data: >= 99.5% held-out masked accuracy at lengths 10..99 and
    # 1000 in about 2 minutes of CPU training.
    "default": {"mode": "bucketed", "max_timesteps": 16384, "epochs": 8,
                "learning_rate": 0.01, "schedule": "cosine", "warmup_steps": 100,
                "final_fraction": 0.01},
    # The seed: batches of exactly 1000 sequences of one length, 30 steps an epoch,
    # 10 epochs, Adam at a constant 0.001.
    "seed": {"mode": "bucketed", "batch_size": 1000, "same_length": True,
             "drop_remainder": True, "steps_per_epoch": 30, "epochs": 10,
             "learning_rate": 1e-3, "schedule": "constant"},
}
# Evaluation and prediction batches: smaller than training's (1000 sequences), so that a
# model's activations for a batch of long sequences fit in memory.
EVAL_BATCH_SIZE = 256

# Model size limits, checked before anything is allocated. An LSTM layer of U units over I
# inputs holds 4U(U + I + 1) weights: at 4096 units that is 134M (0.5 GiB in float32,
# 1.5 GiB with Adam's two slots), 128 times the seed's first layer in width and beyond
# the widest LSTMs in common use; more is a typo (--lstm-units 40000 asks for 25 GiB a
# layer). Depth: plain stacked LSTMs (no residual connections, like this one) train
# poorly beyond 4-8 layers (GNMT, Wu et al. 2016); 16 leaves room and stops a typo.
MAX_LSTM_UNITS = 4096
MAX_LSTM_LAYERS = 16

# The largest .npy input `trainer predict` reads: 2**30 values, 4 GiB as float32. Larger
# inputs belong in a seqdata dataset (or several .npy files).
MAX_INPUT_VALUES = 2**30
