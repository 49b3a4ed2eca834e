"""`Group`: sequences that may share a batch, held as the parts they were read in.

Batching never concatenates what it reads. A group addresses its sequences by row over
its parts (a shard's bucket, a carried remainder), and `Group.pad` copies each batch
straight from those parts into its padded arrays. Rows that are neighbours in one part
and share a length are one contiguous block of ``x``: such a run is copied with one
slice assignment, no index arrays. `block_order` shuffles whole blocks of neighbours,
so that a batch is made of a few such runs; a per-sequence shuffle falls back to one
gather per (part, length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided

from seqdata.read.batch import Batch, BatchMemory, new_batch
from seqdata.sequences import Sequences, step_index

# Copy run by run while a batch holds at most one run per this many sequences; with
# more (and shorter) runs, one gather per (part, length) costs less Python.
ROWS_PER_RUN = 4
# The id of a fill row (see `Group.pad`); real ids are >= 0.
FILL_ID = -1


@dataclass(frozen=True)
class Group:
    """Sequences of several parts, addressed by row (part after part), without copies.

    Attributes:
        parts: the `Sequences` holding the values.
        part: (n,) index into ``parts`` of each row.
        starts: (n,) first timestep of each row in its part's ``x``.
        lengths: (n,) length of each row.
        ids: (n,) dataset-wide id of each row.
    """

    parts: tuple[Sequences, ...]
    part: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    ids: np.ndarray
    _windows: dict = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def of(parts: Sequence[Sequences]) -> Group:
        """The group of ``parts``, in order (rows of part 0 first)."""
        parts = tuple(parts)
        sizes = [len(p) for p in parts]
        return Group(parts,
                     np.repeat(np.arange(len(parts), dtype=np.int32), sizes),
                     np.concatenate([p.offsets[:-1] for p in parts] or [np.zeros(0, np.int64)]),
                     np.concatenate([np.diff(p.offsets) for p in parts]
                                    or [np.zeros(0, np.int64)]),
                     np.concatenate([p.ids for p in parts] or [np.zeros(0, np.int64)]))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sizes(self) -> list[int]:
        """Rows per part."""
        return [len(p) for p in self.parts]

    def _runs(self, rows: np.ndarray, same_length: bool) -> tuple[list[int], list[int]]:
        """Starts and stops (positions in ``rows``) of the maximal runs of rows that are
        neighbours in one part, and of one length if ``same_length``."""
        if not len(rows):
            return [], []
        split = (np.diff(rows) != 1) | (np.diff(self.part[rows]) != 0)
        if same_length:
            split |= np.diff(self.lengths[rows]) != 0
        cuts = np.flatnonzero(split) + 1
        return [0, *cuts.tolist()], [*cuts.tolist(), len(rows)]

    def pad(self, rows: np.ndarray, pad_to: int = 0, size: int = 0,
            memory: BatchMemory = new_batch) -> Batch:
        """Right-pad rows ``rows`` into a `Batch` (length: their longest, or ``pad_to``),
        filled up to ``size`` rows with fill rows (all padding, length 0, id -1), in
        arrays from ``memory``."""
        lengths = self.lengths[rows]
        width = max(int(lengths.max(initial=0)), pad_to)
        features = self.parts[0].x.shape[1] if self.parts else 0
        real, fill = len(rows), max(size - len(rows), 0)
        out = memory(real + fill, width, features)
        # Only the padding is zeroed: writing zeros everywhere first would cost a pass.
        x, y = out.x, out.y
        x[real:] = 0
        y[real:] = 0
        firsts, stops = self._runs(rows, same_length=True)
        if len(firsts) * ROWS_PER_RUN <= len(rows):
            heads = rows[firsts]
            for a, e, p, s, n in zip(firsts, stops, self.part[heads].tolist(),
                                     self.starts[heads].tolist(), self.lengths[heads].tolist(),
                                     strict=True):
                src = self.parts[p]
                x[a:e, :n] = src.x[s:s + (e - a) * n].reshape(e - a, n, features)
                y[a:e, :n] = src.y[s:s + (e - a) * n].reshape(e - a, n)
                x[a:e, n:] = 0
                y[a:e, n:] = 0
        else:
            for same, p, n in self._by_part_and_length(rows):
                starts = self.starts[rows[same]]
                x_windows, y_windows = self._windows_of(p, n)
                x[same, :n] = x_windows[starts]
                y[same, :n] = y_windows[starts]
                x[same, n:] = 0
                y[same, n:] = 0
        out.lengths[:real], out.lengths[real:] = lengths, 0
        out.ids[:real], out.ids[real:] = self.ids[rows], FILL_ID
        np.less(np.arange(width, dtype=out.lengths.dtype), out.lengths[:, None], out=out.mask)
        return out

    def _windows_of(self, part: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`windows` of length ``n`` over a part's x and y, made once per group."""
        if (part, n) not in self._windows:
            src = self.parts[part]
            self._windows[part, n] = windows(src.x, n), windows(src.y, n)
        return self._windows[part, n]

    def _by_part_and_length(self, rows: np.ndarray):
        """(positions in ``rows``, part, length) for every (part, length) among ``rows``."""
        lengths = self.lengths[rows]
        key = self.part[rows].astype(np.int64) * (int(lengths.max(initial=0)) + 1) + lengths
        order = np.argsort(key, kind="stable")
        cuts = np.flatnonzero(np.diff(key[order])) + 1
        for a, e in zip([0, *cuts.tolist()], [*cuts.tolist(), len(order)], strict=True):
            same = order[a:e]
            yield same, int(self.part[rows[same[0]]]), int(lengths[same[0]])

    def take(self, rows: np.ndarray) -> Sequences:
        """Rows ``rows`` copied into one new `Sequences`.

        Runs of neighbours keep the order of ``rows``; scattered rows come out grouped by
        part and length (what carries a remainder needs: the next window reshuffles it).
        """
        if not self.parts or not len(rows):
            return Sequences.empty(self.parts[0].x.shape[1] if self.parts else 0)
        firsts, stops = self._runs(rows, same_length=False)
        if len(firsts) * ROWS_PER_RUN <= len(rows):
            spans = [(int(self.part[rows[a]]), int(self.starts[rows[a]]),
                      int(self.starts[rows[e - 1]] + self.lengths[rows[e - 1]]))
                     for a, e in zip(firsts, stops, strict=True)]
            xs = [self.parts[p].x[s:t] for p, s, t in spans]
            ys = [self.parts[p].y[s:t] for p, s, t in spans]
        else:
            groups = [(rows[same], p, n) for same, p, n in self._by_part_and_length(rows)]
            rows = np.concatenate([r for r, _, _ in groups])
            xs = [self._windows_of(p, n)[0][self.starts[r]].reshape(len(r) * n, -1)
                  for r, p, n in groups]
            ys = [self._windows_of(p, n)[1][self.starts[r]].reshape(-1) for r, p, n in groups]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(self.lengths[rows], out=offsets[1:])
        return Sequences(np.concatenate(xs), np.concatenate(ys), offsets, self.ids[rows])


def windows(a: np.ndarray, n: int) -> np.ndarray:
    """Every run of ``n`` consecutive rows of ``a``, as a read-only view (len(a)-n+1, n, ...).

    Indexing it with sequence starts copies each sequence as one contiguous block: 3-4x
    faster than gathering its steps one row at a time.
    """
    return as_strided(a, (len(a) - n + 1, n, *a.shape[1:]), (a.strides[0], *a.strides),
                      writeable=False)


def block_order(sizes: Sequence[int], block: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of rows ``0 .. sum(sizes) - 1`` that keeps neighbours together.

    Each part (``sizes[i]`` rows, part after part) is cut into blocks of ``block`` rows
    at a random phase, so that which neighbours share a block changes from epoch to
    epoch; blocks never cross parts, and their order is a random permutation. With
    ``block=1`` this is ``rng.permutation``.

    >>> block_order([5, 3], 1, np.random.default_rng(0)).shape
    (8,)
    """
    total = sum(sizes)
    if block == 1:
        return rng.permutation(total)
    starts, stops, base = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], 0
    for size in sizes:
        if not size:
            continue
        phase = int(rng.integers(block))
        cuts = np.arange(phase, size, block)
        first = cuts if phase == 0 else np.concatenate(([0], cuts))
        starts.append(base + first)
        stops.append(base + np.append(first[1:], size))
        base += size
    start, stop = np.concatenate(starts), np.concatenate(stops)
    order = rng.permutation(len(start))
    run_lengths = (stop - start)[order]
    offsets = np.zeros(len(order) + 1, np.int64)
    np.cumsum(run_lengths, out=offsets[1:])
    return step_index(start[order], run_lengths, offsets)
