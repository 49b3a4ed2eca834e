"""Vectorized generation of one chunk of a lag-sum dataset.

Chunk ``c`` holds ids ``c*C .. c*C+C-1`` and draws from ``SeedSequence([seed, c])``: first
the lengths of all C ids, then all their values in one block. Sequences are laid out
sorted by length (ties by id), so that every length bucket is one contiguous run and
nothing is copied to group them. A last, partial chunk is drawn whole and then cut, so a
sequence's content depends on (seed, the other spec fields, id) only, not on the number
of sequences: a dataset of N sequences is a prefix of every larger one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from seqdata.sequences import Sequences
from seqdata.spec import LagSumSpec


class ChunkBuffers:
    """Arrays one process reuses from chunk to chunk.

    A chunk's arrays are tens of MB: glibc maps allocations that large afresh each time,
    so every chunk would page-fault all of its memory again. Reused, they stay mapped.
    An array handed out is valid until the next request of the same name.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
        """An uninitialized C-contiguous array of ``shape`` and ``dtype``."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < nbytes:
            # Headroom: the next chunk is usually a little larger than this one.
            buffer = np.empty(nbytes + nbytes // 8, np.uint8)
            self._buffers[name] = buffer
        return buffer[:nbytes].view(dtype).reshape(shape)


def _empty(buffers: ChunkBuffers | None, name: str, shape: tuple[int, ...],
           dtype: type) -> np.ndarray:
    return np.empty(shape, dtype) if buffers is None else buffers.array(name, shape, dtype)


# Rows summed per block: a block of x (5 float32 columns) stays in L2 cache while all K
# of its strided columns are added, instead of streaming the whole of x from memory K times.
LAG_BLOCK = 16_384


def lag_sums(x: np.ndarray, offsets: np.ndarray, window: int, out: np.ndarray | None = None,
             fill: Callable[[np.ndarray], object] | None = None) -> np.ndarray:
    """``s[t] = x[t,0] + x[t-1,1] + ... + x[t-K+1,K-1]`` within each sequence, float32.

    Terms whose time index falls before the start of their sequence are absent. The sum
    is accumulated in float32 in the order i = 0..K-1, exactly as the seed's code does
    (every element goes through the same additions in the same order, block by block).
    ``out``, if given, receives the sums. ``fill``, if given, is called on each block of
    rows of ``x``, in order, just before the block is summed: generation draws the values
    there, so that they are summed while still in cache.
    """
    total = len(x)
    s = np.empty(total, x.dtype) if out is None else out
    for a in range(0, total, LAG_BLOCK):
        b = min(a + LAG_BLOCK, total)
        if fill is not None:
            fill(x[a:b])
        np.copyto(s[a:b], x[a:b, 0])
        for i in range(1, window):
            lo = max(a, i)
            if lo < b:
                np.add(s[lo:b], x[lo - i:b - i, i], out=s[lo:b])
    if window > 1 and len(offsets) > 1:
        # The first K-1 steps of each sequence picked up terms from the sequence before:
        # recompute those few from scratch (adding 0.0 for an absent term is exact).
        # Step h of a sequence sums terms i = 0..h; adding 0 once stands for the absent
        # terms i > h exactly (the seed's code added zeros, which turns -0.0 into +0.0).
        starts, lengths = offsets[:-1], np.diff(offsets)
        for h in range(window - 1):
            t = starts[lengths > h] + h
            fixed = x[t, 0]
            for i in range(1, h + 1):
                fixed += x[t - i, i]
            fixed += 0
            s[t] = fixed
    return s


def labels_from_sums(sums: np.ndarray, threshold: float,
                     out: np.ndarray | None = None) -> np.ndarray:
    """``sums > threshold`` as uint8 0/1, into ``out`` if given."""
    y = np.empty(len(sums), np.uint8) if out is None else out
    np.greater(sums, np.float32(threshold), out=y.view(np.bool_))
    return y


def chunk_rng(spec: LagSumSpec, chunk: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, chunk]))


def generate_chunk(spec: LagSumSpec, chunk: int, buffers: ChunkBuffers | None = None) -> Sequences:
    """All sequences of chunk ``chunk``, sorted by length (ties by id).

    With ``buffers``, the large arrays are views into them, valid until the next call
    with the same buffers; the values are the same either way.

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
    total = int(offsets[-1])
    x = _empty(buffers, "x", (total, spec.num_features), np.float32)
    # Drawn block by block as the sums go: the same stream as rng.random(x.shape, float32).
    sums = lag_sums(x, offsets, spec.window, out=_empty(buffers, "sums", (total,), np.float32),
                    fill=lambda rows: rng.random(out=rows, dtype=np.float32))
    y = labels_from_sums(sums, spec.threshold, out=_empty(buffers, "y", (total,), np.uint8))
    if spec.seed_compat_leak:
        # The seed's `y = x[:, :, 0]` is a view: its in-place sum overwrites feature 0.
        x[:, 0] = sums
    seqs = Sequences(x, y, offsets, order.astype(np.int64) + start)
    if stop - start < spec.chunk_size:
        seqs = seqs.take(np.flatnonzero(order < stop - start))
    return seqs
