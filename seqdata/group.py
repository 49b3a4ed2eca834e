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
from dataclasses import dataclass

import numpy as np

from seqdata.batch import Batch
from seqdata.sequences import Sequences, step_index

# Copy run by run while a batch holds at most one run per this many sequences; with
# more (and shorter) runs, one gather per (part, length) costs less Python.
ROWS_PER_RUN = 4


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

    def pad(self, rows: np.ndarray, pad_to: int = 0) -> Batch:
        """Right-pad rows ``rows`` into a `Batch` (length: their longest, or ``pad_to``)."""
        lengths = self.lengths[rows]
        width = max(int(lengths.max(initial=0)), pad_to)
        features = self.parts[0].x.shape[1] if self.parts else 0
        # Only the padding is zeroed: writing zeros everywhere first would cost a pass.
        x = np.empty((len(rows), width, features), np.float32)
        y = np.empty((len(rows), width), np.uint8)
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
                steps = self.starts[rows[same]][:, None] + np.arange(n)
                x[same, :n] = self.parts[p].x[steps]
                y[same, :n] = self.parts[p].y[steps]
                x[same, n:] = 0
                y[same, n:] = 0
        mask = np.arange(width) < lengths[:, None]
        return Batch(x, y, mask, lengths.astype(np.int32), self.ids[rows])

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
        """Rows ``rows`` (in that order) copied into one new `Sequences`."""
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = self.ids[rows]
        if not self.parts or not len(rows):
            return Sequences.empty(self.parts[0].x.shape[1] if self.parts else 0)
        firsts, stops = self._runs(rows, same_length=False)
        if len(firsts) * ROWS_PER_RUN <= len(rows):
            spans = [(int(self.part[rows[a]]), int(self.starts[rows[a]]),
                      int(self.starts[rows[e - 1]] + self.lengths[rows[e - 1]]))
                     for a, e in zip(firsts, stops, strict=True)]
            return Sequences(np.concatenate([self.parts[p].x[s:t] for p, s, t in spans]),
                             np.concatenate([self.parts[p].y[s:t] for p, s, t in spans]),
                             offsets, ids)
        first = self.parts[0]
        x = np.empty((int(offsets[-1]), first.x.shape[1]), first.x.dtype)
        y = np.empty(int(offsets[-1]), first.y.dtype)
        where = self.part[rows]
        for p, src in enumerate(self.parts):
            at = np.flatnonzero(where == p)
            if not len(at):
                continue
            own = np.zeros(len(at) + 1, np.int64)
            np.cumsum(lengths[at], out=own[1:])
            dst = step_index(offsets[at], lengths[at], own)
            steps = step_index(self.starts[rows[at]], lengths[at], own)
            x[dst], y[dst] = src.x[steps], src.y[steps]
        return Sequences(x, y, offsets, ids)


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
