"""The tf.data peers of the benchmark: TensorFlow's own idioms over the same data.

Imported only by `benchmarks/bench.py`, and only when TensorFlow is installed.
"""

from __future__ import annotations

import time

from seqdata.sequences import Sequences
from seqdata.tf import import_tensorflow

tf = import_tensorflow()  # quietly: without TensorFlow's native start-up lines


def tf_data_peers(flat: Sequences, boundaries: tuple[int, ...], n: int) -> list[dict]:
    """``Dataset.range(n).map(slice)`` then ``bucket_by_sequence_length`` / ``padded_batch``."""
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    seqs = flat.slice(0, min(n, len(flat)))
    x = tf.constant(seqs.x)
    y = tf.constant(seqs.y)
    offsets = tf.constant(seqs.offsets)

    def get(i):
        a, b = offsets[i], offsets[i + 1]
        return x[a:b], y[a:b]

    source = tf.data.Dataset.range(len(seqs)).map(get)
    bucketed = source.bucket_by_sequence_length(
        lambda xs, ys: tf.shape(xs)[0], [b + 1 for b in boundaries[:-1]],
        [1000] * len(boundaries))
    padded = source.padded_batch(1000)
    rows = []
    real = seqs.num_timesteps
    for case, dataset in (("peer: tf.data bucket_by_sequence_length", bucketed),
                          ("peer: tf.data padded_batch", padded)):
        start = time.perf_counter()
        for _ in dataset:
            pass
        seconds = time.perf_counter() - start
        rows.append({"benchmark": "read+batch", "case": case, "seconds": seconds,
                     "timesteps_per_s": real / seconds, "sequences": len(seqs)})
    return rows
