"""A share of an epoch's batches, padded from where their rows lie in the shards.

A loader worker pads only some of an epoch's batches, but must plan all of them: which
rows share a batch depends on the shuffle of whole windows and on the rows carried over
from earlier ones. Planning needs lengths only. `Locator` feeds the planner lengths-only
parts whose ids are each row's *location* (shard, row in the shard): the planner moves
ids around but never decides anything by them, so the plan is exactly that of
`Dataset.batches`. A selected batch then reads its own rows' values and nothing else,
as byte ranges of the files (HDF5 datasets, Parquet pages; rows that are neighbours in a
shard and in the batch are one range: a few dozen reads a batch), so that W workers
together read the epoch's bytes about once instead of W times. A file without such
reads (rewritten by another tool: HDF5 chunked, Parquet of another page layout) is read
whole when a batch first needs it and kept while later batches are likely to need it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from seqdata.read.batch import Batch, BatchMemory, new_batch
from seqdata.read.batching import Planned
from seqdata.read.group import Group
from seqdata.sequences import Sequences

SHARD_SHIFT = 32  # a location is shard << SHARD_SHIFT | row in the shard
ROW_MASK = (1 << SHARD_SHIFT) - 1

# shard -> its buckets, lengths only (real ids)
MetaReader = Callable[[int], list[Sequences]]
# (shard, spans, x_out, y_out) -> whether the spans were read (`Dataset.read_spans`)
SpanReader = Callable[[int, np.ndarray, np.ndarray, np.ndarray], bool]
# shard -> its buckets with their values
ValueReader = Callable[[int], list[Sequences]]


class Locator:
    """Plans over locations (`load`) and pads planned batches from the shards (`pad`).

    Args:
        read_meta, read_spans, read_values: how a dataset reads (`seqdata.Dataset`).
        num_features: F of ``x``.
        keep_rows: rows whose shards' lengths and ids stay in memory (about 40 bytes a
            row; the shards used longest ago go first, the last one always stays). A
            batch holds rows carried from shards read long before: with too few kept,
            each such row costs a lengths-only read of its whole shard again.
        keep_values: decoded shards that stay in memory (formats without span reads).
    """

    def __init__(self, read_meta: MetaReader, read_spans: SpanReader,
                 read_values: ValueReader, num_features: int, keep_rows: int,
                 keep_values: int) -> None:
        self._read_meta, self._read_spans = read_meta, read_spans
        self._read_values, self._features = read_values, num_features
        self._keep_rows, self._keep_values = keep_rows, keep_values
        self._rows = 0  # rows of the shards in ``_meta``
        self._meta: OrderedDict[int, _Shard] = OrderedDict()
        self._values: OrderedDict[int, list[Sequences]] = OrderedDict()
        self._x, self._y = np.empty((0, num_features), np.float32), np.empty(0, np.uint8)

    @property
    def keeps(self) -> tuple[int, int]:
        """(keep_rows, keep_values): what it was made to keep."""
        return self._keep_rows, self._keep_values

    def _shard(self, shard: int) -> _Shard:
        if shard in self._meta:
            self._meta.move_to_end(shard)
            return self._meta[shard]
        meta = self._meta[shard] = _Shard.of(self._read_meta(shard))
        self._rows += len(meta.ids)
        while self._rows > self._keep_rows and len(self._meta) > 1:
            self._rows -= len(self._meta.popitem(last=False)[1].ids)
        return meta

    def _values_of(self, shard: int) -> list[Sequences]:
        """A shard's buckets with their values, decoded whole (one call decodes a shard's
        row groups faster than a call per row group)."""
        if shard in self._values:
            self._values.move_to_end(shard)
            return self._values[shard]
        values = self._values[shard] = self._read_values(shard)
        if len(self._values) > self._keep_values:
            self._values.popitem(last=False)
        return values

    def _buffers(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat x and y for ``steps`` timesteps, reused from batch to batch (fresh memory
        costs a page fault a page at first touch: as much as the read here)."""
        if len(self._y) < steps:
            self._x = np.empty((steps + steps // 4, self._features), np.float32)
            self._y = np.empty(steps + steps // 4, np.uint8)
        return self._x[:steps], self._y[:steps]

    def load(self, shard: int, buffers: object = None) -> list[Sequences]:
        """The planner's `ShardLoader`: a shard's buckets, lengths only, with locations
        for ids."""
        del buffers  # nothing is read into them: lengths and ids are small
        meta = self._shard(shard)
        return [Sequences(p.x, p.y, p.offsets,
                          (shard << SHARD_SHIFT) + np.arange(a, a + len(p), dtype=np.int64))
                for p, a in zip(meta.parts, meta.firsts[:-1].tolist(), strict=True)]

    def pad(self, planned: Planned, memory: BatchMemory = new_batch) -> Batch:
        """The `Batch` of ``planned`` (planned over `load`'s parts), in arrays from
        ``memory``: the same values as ``planned.pad()`` over parts with values."""
        where = planned.group.ids[planned.rows]
        lengths = planned.group.lengths[planned.rows]
        n = len(where)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        x, y = self._buffers(int(offsets[-1]))
        shard_of, row_of = where >> SHARD_SHIFT, where & ROW_MASK
        ids, starts, bucket_of = (np.empty(n, np.int64) for _ in range(3))
        shards = np.unique(shard_of).tolist()
        for shard in shards:
            at = shard_of == shard
            meta, rows = self._shard(shard), row_of[at]
            ids[at], starts[at] = meta.ids[rows], meta.starts[rows]
            bucket_of[at] = meta.bucket[rows]
        # Runs: rows that are neighbours in one bucket and in the batch are one span.
        cuts = np.flatnonzero((np.diff(where) != 1) | (np.diff(bucket_of) != 0)) + 1
        first, last = np.r_[0, cuts], np.r_[cuts, n] - 1
        spans = np.stack((bucket_of[first], starts[first], starts[last] + lengths[last],
                          offsets[first]), axis=1)
        run_shard = shard_of[first]
        for shard in shards:
            mine = spans[run_shard == shard]
            if not self._read_spans(shard, mine, x, y):
                values = self._values_of(shard)
                for bucket, start, stop, out in mine.tolist():
                    x[out:out + stop - start] = values[bucket].x[start:stop]
                    y[out:out + stop - start] = values[bucket].y[start:stop]
        rows = Sequences(x, y, offsets, ids)
        return Group.of([rows]).pad(np.arange(n), planned.pad_to, planned.size, memory)


class _Shard(NamedTuple):
    """A shard's buckets (lengths only) and, for each of its rows (bucket after bucket),
    the row's id, bucket and first timestep in its bucket."""

    parts: list[Sequences]
    firsts: np.ndarray  # the shard's first row of each bucket, and the row count
    ids: np.ndarray
    bucket: np.ndarray
    starts: np.ndarray

    @staticmethod
    def of(parts: list[Sequences]) -> _Shard:
        sizes = [len(p) for p in parts]
        firsts = np.zeros(len(parts) + 1, np.int64)
        np.cumsum(sizes, out=firsts[1:])
        return _Shard(parts, firsts, np.concatenate([p.ids for p in parts]),
                      np.repeat(np.arange(len(parts)), sizes),
                      np.concatenate([p.offsets[:-1] for p in parts]))
