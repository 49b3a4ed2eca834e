"""`Group`: sequences that may share a batch, held as the parts they were read in.

Batching never concatenates what it reads. A group addresses its sequences by row over
its parts (a shard's bucket in the reader's buffers), and `Group.pad` copies each batch
straight from those parts into its padded arrays. The rows a window leaves over are
carried into the next window's group as views too (`Group.carried`): only rows carried
twice are copied. Rows that lie one after the other in one part and share a length are
one contiguous block of ``x``: such a run is copied with one slice assignment, no index
arrays. `block_order` shuffles whole blocks of neighbours,
so that a batch is made of a few such runs; a per-sequence shuffle falls back to one
gather per (part, length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property

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
    """Sequences of several members, addressed by row (member after member), without
    copies.

    A member is a `Sequences` (a shard's bucket, read in this window) or a `Group` (rows
    carried over from the window before, see `carried`). Rows are found in ``parts``, the
    arrays that hold them: a row's values are ``parts[part[r]].x[starts[r]:][:lengths[r]]``.

    Attributes:
        parts: the `Sequences` holding the values.
        part: (n,) index into ``parts`` of each row.
        starts: (n,) first timestep of each row in its part's ``x``.
        lengths: (n,) length of each row.
        ids: (n,) dataset-wide id of each row.
        segment: (n,) which member each row came in.
        sizes: rows per member.
        fresh: per part, whether a `Sequences` member holds it (read in this window)
            rather than a carried `Group`.
    """

    parts: tuple[Sequences, ...]
    part: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    ids: np.ndarray
    segment: np.ndarray
    sizes: tuple[int, ...]
    fresh: tuple[bool, ...]
    _windows: dict = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def of(members: Sequence[Sequences | Group]) -> Group:
        """The group of ``members``, in order (rows of member 0 first)."""
        parts: list[Sequences] = []
        fresh: list[bool] = []
        part, starts, lengths, ids = [], [], [], []
        for m in members:
            if isinstance(m, Group):
                part.append(m.part + len(parts))
                starts.append(m.starts)
                lengths.append(m.lengths)
                ids.append(m.ids)
                parts += m.parts
                fresh += [False] * len(m.parts)
            else:
                part.append(np.full(len(m), len(parts), np.int32))
                starts.append(m.offsets[:-1])
                lengths.append(np.diff(m.offsets))
                ids.append(m.ids)
                parts.append(m)
                fresh.append(True)
        sizes = tuple(len(m) for m in members)
        none = np.zeros(0, np.int64)
        return Group(tuple(parts), np.concatenate(part or [none]).astype(np.int32, copy=False),
                     np.concatenate(starts or [none]), np.concatenate(lengths or [none]),
                     np.concatenate(ids or [none]),
                     np.repeat(np.arange(len(sizes), dtype=np.int32), sizes), sizes,
                     tuple(fresh))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_features(self) -> int:
        return self.parts[0].x.shape[1] if self.parts else 0

    @cached_property
    def _next(self) -> tuple[np.ndarray, np.ndarray]:
        """(n - 1,) whether row r + 1 starts where row r ends, in r's part; and whether
        it also has r's length."""
        follows = (np.diff(self.part) == 0) & (self.starts[1:] == self.starts[:-1]
                                                + self.lengths[:-1])
        return follows, follows & (np.diff(self.lengths) == 0)

    def _spans(self, rows: np.ndarray, same_length: bool) -> tuple[list[int], list[int]]:
        """Starts and stops (positions in ``rows``) of the maximal runs of consecutive
        rows that lie one after the other in one part (one slice of its ``x``), and are
        of one length if ``same_length``."""
        if not len(rows):
            return [], []
        follows = self._next[1 if same_length else 0]
        split = (np.diff(rows) != 1) | ~follows[np.minimum(rows[:-1], len(follows) - 1)]
        cuts = np.flatnonzero(split) + 1
        return [0, *cuts.tolist()], [*cuts.tolist(), len(rows)]

    def pad(self, rows: np.ndarray, pad_to: int = 0, size: int = 0,
            memory: BatchMemory = new_batch) -> Batch:
        """Right-pad rows ``rows`` into a `Batch` (length: their longest, or ``pad_to``),
        filled up to ``size`` rows with fill rows (all padding, length 0, id -1), in
        arrays from ``memory``."""
        lengths = self.lengths[rows]
        width = max(int(lengths.max(initial=0)), pad_to)
        features = self.num_features
        real, fill = len(rows), max(size - len(rows), 0)
        out = memory(real + fill, width, features)
        out.lengths[:real], out.lengths[real:] = lengths, 0
        out.ids[:real], out.ids[real:] = self.ids[rows], FILL_ID
        _mask(out.lengths, width, out.mask)
        # Only x's padding is zeroed (writing zeros everywhere first would cost a pass);
        # y's is zeroed with the mask at the end, one pass over a byte a step.
        x, y = out.x, out.y
        x[real:] = 0
        firsts, stops = self._spans(rows, same_length=True)
        if len(firsts) * ROWS_PER_RUN <= len(rows):
            heads = rows[firsts]
            for a, e, p, s, n in zip(firsts, stops, self.part[heads].tolist(),
                                     self.starts[heads].tolist(), self.lengths[heads].tolist(),
                                     strict=True):
                src = self.parts[p]
                x[a:e, :n] = src.x[s:s + (e - a) * n].reshape(e - a, n, features)
                y[a:e, :n] = src.y[s:s + (e - a) * n].reshape(e - a, n)
                if n < width:
                    x[a:e, n:] = 0
        else:
            for same, p, n in self._by_length(rows, self.part):
                starts = self.starts[rows[same]]
                x_windows, y_windows = self._windows_of(p, n)
                x[same, :n] = x_windows[starts]
                y[same, :n] = y_windows[starts]
                if n < width:
                    x[same, n:] = 0
        np.multiply(y, out.mask, out=y)
        return out

    def _windows_of(self, part: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`windows` of length ``n`` over a part's x and y, made once per group."""
        if (part, n) not in self._windows:
            src = self.parts[part]
            self._windows[part, n] = windows(src.x, n), windows(src.y, n)
        return self._windows[part, n]

    def _by_length(self, rows: np.ndarray, key: np.ndarray):
        """(positions in ``rows``, key, length) for every (``key[row]``, length) among
        ``rows``, in increasing (key, length), positions in the order of ``rows``."""
        lengths = self.lengths[rows]
        combined = key[rows].astype(np.int64) * (int(lengths.max(initial=0)) + 1) + lengths
        order = np.argsort(combined, kind="stable")
        cuts = np.flatnonzero(np.diff(combined[order])) + 1
        for a, e in zip([0, *cuts.tolist()], [*cuts.tolist(), len(order)], strict=True):
            same = order[a:e]
            yield same, int(key[rows[same[0]]]), int(lengths[same[0]])

    def carried(self, rows: np.ndarray) -> Group:
        """Rows ``rows``, carried over to the next window as one member of its group.

        Rows that are neighbours in their member keep the order of ``rows`` while they
        make runs of at least ``ROWS_PER_RUN``; scattered rows come out grouped by member
        and length (the next window reshuffles them). Rows of this window's parts stay
        views: the reader keeps a window's buffers until the window after it is
        batched. Rows carried in already are copied, as their buffers are then reused.
        """
        firsts = self._neighbours(rows)
        if len(firsts) * ROWS_PER_RUN > len(rows):
            rows = rows[np.concatenate([same for same, _, _ in self._by_length(rows, self.segment)]
                                       or [np.zeros(0, np.int64)])]
        part, starts = self.part[rows], self.starts[rows]
        parts = list(self.parts)
        old = ~np.asarray(self.fresh, bool)[part]
        if old.any():
            copy, at = self._copy(rows[old])
            part, starts = part.copy(), starts.copy()
            part[old], starts[old] = len(parts), at
            parts.append(copy)
        used = np.flatnonzero(np.bincount(part, minlength=len(parts)))
        renumber = np.zeros(len(parts), np.int32)
        renumber[used] = np.arange(len(used), dtype=np.int32)
        return Group(tuple(parts[i] for i in used.tolist()), renumber[part], starts,
                     self.lengths[rows], self.ids[rows], np.zeros(len(rows), np.int32),
                     (len(rows),), (True,) * len(used))

    def _neighbours(self, rows: np.ndarray) -> list[int]:
        """Starts (positions in ``rows``) of the maximal runs of rows that are neighbours
        in one member."""
        if not len(rows):
            return []
        split = (np.diff(rows) != 1) | (np.diff(self.segment[rows]) != 0)
        return [0, *(np.flatnonzero(split) + 1).tolist()]

    def _copy(self, rows: np.ndarray) -> tuple[Sequences, np.ndarray]:
        """Rows ``rows`` copied into one new `Sequences`, and where each row starts in it
        (runs of a part's slices are copied whole, scattered rows by gathers)."""
        firsts, stops = self._spans(rows, same_length=False)
        if len(firsts) * ROWS_PER_RUN <= len(rows):
            order = np.arange(len(rows))
            spans = [(int(self.part[rows[a]]), int(self.starts[rows[a]]),
                      int(self.starts[rows[e - 1]] + self.lengths[rows[e - 1]]))
                     for a, e in zip(firsts, stops, strict=True)]
            xs = [self.parts[p].x[s:t] for p, s, t in spans]
            ys = [self.parts[p].y[s:t] for p, s, t in spans]
        else:
            groups = list(self._by_length(rows, self.part))
            order = np.concatenate([same for same, _, _ in groups])
            xs = [self._windows_of(p, n)[0][self.starts[rows[same]]].reshape(len(same) * n, -1)
                  for same, p, n in groups]
            ys = [self._windows_of(p, n)[1][self.starts[rows[same]]].reshape(-1)
                  for same, p, n in groups]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(self.lengths[rows[order]], out=offsets[1:])
        at = np.empty(len(rows), np.int64)
        at[order] = offsets[:-1]
        return Sequences(np.concatenate(xs), np.concatenate(ys), offsets,
                         self.ids[rows[order]]), at


# The mask of a batch up to this width is a gather of rows of a triangle of booleans
# (row n: n leading True), 3-4x faster than comparing every step with the lengths.
MASK_TABLE_WIDTH = 512


@cache
def _triangle() -> np.ndarray:
    return np.tri(MASK_TABLE_WIDTH + 1, MASK_TABLE_WIDTH, -1, dtype=np.bool_)


def _mask(lengths: np.ndarray, width: int, out: np.ndarray) -> None:
    """Write the (B, width) mask of ``lengths`` (each <= width) into ``out``."""
    if width <= MASK_TABLE_WIDTH:
        np.take(_triangle()[:, :width], lengths, axis=0, out=out)
    else:
        np.less(np.arange(width, dtype=lengths.dtype), lengths[:, None], out=out)


def windows(a: np.ndarray, n: int) -> np.ndarray:
    """Every run of ``n`` consecutive rows of ``a``, as a read-only view (len(a)-n+1, n, ...).

    Indexing it with sequence starts copies each sequence as one contiguous block: 3-4x
    faster than gathering its steps one row at a time.
    """
    shape, strides = (len(a) - n + 1, n, *a.shape[1:]), (a.strides[0], *a.strides)
    if not a.flags.c_contiguous:
        return as_strided(a, shape, strides, writeable=False)
    view = np.ndarray(shape, a.dtype, a, 0, strides)  # as as_strided does, 5x cheaper
    view.flags.writeable = False
    return view


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
