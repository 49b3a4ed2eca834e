"""Defaults the CLI shows before TensorFlow loads (the modules that use them import it)."""

DEFAULT_EPOCHS = 10
# Evaluation and prediction batches: smaller than training's (1000 sequences), so that a
# model's activations for a batch of long sequences fit in memory.
EVAL_BATCH_SIZE = 256
