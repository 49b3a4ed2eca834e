"""Vectorized generation of one chunk of a lag-sum dataset.

Chunk ``c`` holds ids ``c*C .. c*C+C-1`` and draws from ``SeedSequence([seed, c])``: first
the lengths of all C ids, then all their values in one block. Sequences are laid out
sorted by length (ties by id), so that every length bucket is one contiguous run and
nothing is copied to group them. A last, partial chunk is drawn whole and then cut, so a
sequence's content depends on (seed, the other spec fields, id) only, not on the number
of sequences: a dataset of N sequences is a prefix of every larger one.
"""

from __future__ import annotations

import numpy as np

from seqdata.sequences import Sequences
from seqdata.spec import LagSumSpec


def lag_sums(x: np.ndarray, offsets: np.ndarray, window: int) -> np.ndarray:
    """``s[t] = x[t,0] + x[t-1,1] + ... + x[t-K+1,K-1]`` within each sequence, float32.

    Terms whose time index falls before the start of their sequence are absent. The sum
    is accumulated in float32 in the order i = 0..K-1, exactly as the seed's code does.
    """
    s = x[:, 0].copy()
    for i in range(1, window):
        s[i:] += x[:-i, i]
    if window > 1 and len(offsets) > 1:
        # The first K-1 steps of each sequence picked up terms from the sequence before:
        # recompute those few from scratch (adding 0.0 for an absent term is exact).
        head = np.arange(window - 1)
        starts = offsets[:-1, None]
        keep = head[None, :] < np.diff(offsets)[:, None]
        t = (starts + head)[keep]
        j = np.broadcast_to(head, keep.shape)[keep]
        fixed = x[t, 0].copy()
        for i in range(1, window):
            fixed += np.where(j >= i, x[np.maximum(t - i, 0), i], np.float32(0))
        s[t] = fixed
    return s


def labels_from_sums(sums: np.ndarray, threshold: float) -> np.ndarray:
    return (sums > np.float32(threshold)).astype(np.uint8)


def chunk_rng(spec: LagSumSpec, chunk: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, chunk]))


def generate_chunk(spec: LagSumSpec, chunk: int) -> Sequences:
    """All sequences of chunk ``chunk``, sorted by length (ties by id).

    >>> seqs = generate_chunk(LagSumSpec(num_sequences=10, seed=0), 0)
    >>> len(seqs), seqs.x.dtype.name, bool((seqs.lengths[:-1] <= seqs.lengths[1:]).all())
    (10, 'float32', True)
    """
    start, stop = spec.chunk_ids(chunk)
    if not 0 <= start < stop:
        raise ValueError(f"chunk must be in 0..{spec.num_chunks - 1}, got {chunk}")
    rng = chunk_rng(spec, chunk)
    lengths = spec.lengths.sample(rng, spec.chunk_size)
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    offsets = np.zeros(len(order) + 1, np.int64)
    np.cumsum(sorted_lengths, out=offsets[1:])
    x = rng.random((int(offsets[-1]), spec.num_features), dtype=np.float32)
    sums = lag_sums(x, offsets, spec.window)
    y = labels_from_sums(sums, spec.threshold)
    if spec.seed_compat_leak:
        # The seed's `y = x[:, :, 0]` is a view: its in-place sum overwrites feature 0.
        x[:, 0] = sums
    seqs = Sequences(x, y, offsets, order.astype(np.int64) + start)
    if stop - start < spec.chunk_size:
        seqs = seqs.take(np.flatnonzero(order < stop - start))
    return seqs
