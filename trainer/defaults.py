"""Defaults and limits the CLI checks before TensorFlow loads (the modules that use them
import it)."""

DEFAULT_EPOCHS = 10
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
