"""Bucketed and padded batches, streamed shard window by shard window.

An epoch visits the shards in a seeded random order, a window of a few shards at a time.
Each window's sequences join those carried over from earlier windows, are split into
groups (one per bucket, one per exact length with ``same_length``, or one for all in
padded mode), shuffled within each group and cut into batches by count or by a budget of
timesteps; sequences that do not fill a batch are carried to the next window, so only
the last batch of each group can be short. The window's batches are yielded in a seeded
random order. Memory is bounded by the window and the carry, not by the dataset. With
``static_shapes`` the cut is that of ``pad_to_bucket``, and a short last batch is only
planned with fill rows up to the full count (`Planned.size`): the order never changes.

The shuffle within a group moves blocks of ``shuffle_block`` neighbours (cut at a random
phase each epoch; see `seqdata.read.group.block_order`): a batch is then a few contiguous
runs of the shards' arrays, which `Group.pad` copies with slice assignments instead of
gathering every timestep. Stored neighbours are independent draws (generation lays out
each chunk's sequences by length, not by anything they contain), so this keeps batches
as random as a per-sequence shuffle; ``shuffle_block=1`` is that per-sequence shuffle.

Every random choice comes from ``default_rng([seed, epoch])``, so the same seed and epoch
give the same batches in the same order from either format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import NamedTuple

import numpy as np

from seqdata.errors import SpecError
from seqdata.read.batch import Batch, BatchMemory, new_batch
from seqdata.read.config import BatchConfig
from seqdata.read.group import FILL_ID, Group, block_order
from seqdata.sequences import Sequences
from seqdata.store.buffers import ReadBuffers


def _per_batch(cfg: BatchConfig, pad_to: int) -> int | None:
    """Sequences in a full batch padded to ``pad_to`` steps (None: a budget over each
    batch's own longest sequence decides)."""
    if cfg.size is not None:
        return cfg.size
    return max(cfg.max_timesteps // pad_to, 1) if pad_to else None


def _cut(lengths: np.ndarray, cfg: BatchConfig, pad_to: int) -> list[int]:
    """Where batches end over sequences of ``lengths`` in order (the stop of each)."""
    n = len(lengths)
    per_batch = _per_batch(cfg, pad_to)
    if per_batch is not None:
        return [*range(per_batch, n, per_batch), n]
    budget = cfg.max_timesteps
    stops, start = [], 0
    most = budget // max(int(lengths.min(initial=1)), 1) + 1  # no batch holds more
    while start < n:
        # (count) * (running max length) only grows, so the batch is a prefix of `window`.
        window = lengths[start:start + most]
        fits = np.arange(1, len(window) + 1) * np.maximum.accumulate(window) <= budget
        start += max(int(fits.sum()), 1)
        stops.append(start)
    return stops


def _group_parts(parts: list[Sequences], cfg: BatchConfig) -> Iterator[tuple[int, Sequences]]:
    """(group key, sequences) of one shard's buckets: who may share a batch."""
    for bucket, part in enumerate(parts):
        if not len(part):
            continue
        if cfg.mode == "padded":
            yield 0, part
        elif not cfg.same_length:
            yield bucket, part
        else:  # a bucket part is sorted by length: one run per length
            lengths = part.lengths
            cuts = np.flatnonzero(np.diff(lengths)) + 1
            for a, e in zip(np.r_[0, cuts], np.r_[cuts, len(part)], strict=True):
                yield int(lengths[a]), part.slice(int(a), int(e))


# (shard index, buffers to read into) -> its buckets
ShardLoader = Callable[[int, ReadBuffers], list[Sequences]]


class Planned(NamedTuple):
    """One batch of an epoch, planned but not yet padded: rows ``rows`` of ``group``,
    padded to at least ``pad_to`` steps and filled up to ``size`` rows (``size`` is
    ``len(rows)`` unless ``static_shapes`` fills a short batch)."""

    group: Group
    rows: np.ndarray
    pad_to: int
    size: int

    @property
    def ids(self) -> np.ndarray:
        """The batch's ids, ``FILL_ID`` (-1) on its fill rows."""
        fill = np.full(self.size - len(self.rows), FILL_ID, np.int64)
        return np.concatenate((self.group.ids[self.rows], fill))

    @property
    def lengths(self) -> np.ndarray:
        """The batch's lengths, 0 on its fill rows."""
        return np.concatenate((self.group.lengths[self.rows],
                               np.zeros(self.size - len(self.rows), np.int64)))

    def share(self, rank: int, ranks: int) -> Planned:
        """Rank ``rank`` of ``ranks``' part of this (global) batch: a contiguous part of
        its rows (parts differ by at most one row), filled up to the largest part's count
        (and, with static shapes, to ``size / ranks`` rounded up), padded to at least the
        whole batch's longest length, so every rank's part has one shape."""
        n = len(self.rows)
        part = self.rows[n * rank // ranks:n * (rank + 1) // ranks]
        count = max(-(-n // ranks), -(-self.size // ranks), 1)
        longest = int(self.group.lengths[self.rows].max(initial=1))
        return Planned(self.group, part, max(self.pad_to, longest), count)

    def pad(self, memory: BatchMemory = new_batch) -> Batch:
        """The padded `Batch`, in arrays from ``memory``."""
        return self.group.pad(self.rows, self.pad_to, self.size, memory)


def pad_length(cfg: BatchConfig, key: int, boundaries: tuple[int, ...]) -> int:
    """The length every batch of group ``key`` is padded to (0: its longest sequence)."""
    if cfg.mode == "padded":
        return boundaries[-1] if cfg.static_shapes else 0
    return boundaries[key] if cfg.pad_to_bucket or cfg.static_shapes else 0


def _epoch_start(num_shards: int, cfg: BatchConfig) -> tuple[np.random.Generator, np.ndarray]:
    """The epoch's generator, and the order it visits the shards in (its first draw)."""
    rng = np.random.default_rng([cfg.seed, cfg.epoch])
    return rng, rng.permutation(num_shards) if cfg.shuffle else np.arange(num_shards)


def shard_order(num_shards: int, cfg: BatchConfig) -> np.ndarray:
    """The order in which an epoch under ``cfg`` reads the shards."""
    return _epoch_start(num_shards, cfg)[1]


def _windows(order: np.ndarray, cfg: BatchConfig) -> list[np.ndarray]:
    return [order[i:i + cfg.window_shards] for i in range(0, len(order), cfg.window_shards)]


def plan_batches(num_shards: int, load: ShardLoader, cfg: BatchConfig,
                 boundaries: tuple[int, ...], reader: WindowReader | None = None,
                 then: BatchConfig | None = None) -> Iterator[Planned]:
    """The epoch's batches, before padding.

    Windows are read by ``reader`` (default: one of its own), ahead of time with
    ``read_ahead``; with ``then`` (the config of the epoch that ``reader`` reads next),
    the first window of that epoch is read while this epoch's last window is batched.

    A group may be a view of buffers that are reused once the window after next is
    read: use each item before asking for the next one.
    """
    rng, order = _epoch_start(num_shards, cfg)
    windows = _windows(order, cfg)
    after = None
    if then is not None and cfg.read_ahead:
        after = _windows(_epoch_start(num_shards, then)[1], then)[0]
    own = reader is None
    read = (reader or WindowReader()).read(windows, load, after, ahead=cfg.read_ahead,
                                           close=own)
    carry: dict[int, Group] = {}
    for w, shards in enumerate(read):
        last = w == len(windows) - 1
        members: dict[int, list[Sequences | Group]] = {k: [v] for k, v in carry.items()}
        for parts in shards:
            for key, part in _group_parts(parts, cfg):
                members.setdefault(key, []).append(part)
        carry, pending = {}, []
        for key in sorted(members):
            # pop: each group's pieces are freed with it, so a window is held once.
            group = Group.of(members.pop(key))
            pad_to = pad_length(cfg, key, boundaries)
            rows = (block_order(group.sizes, cfg.shuffle_block, rng) if cfg.shuffle
                    else np.arange(len(group)))
            stops = _cut(group.lengths[rows], cfg, pad_to)
            batches = list(zip([0, *stops[:-1]], stops, strict=True))
            tail_start = batches[-1][0]
            # Only a group's last batch may be short: carry it into the next window, and
            # at the end of the epoch keep it unless asked to drop it. With a budget, the
            # last batch always counts as short.
            if cfg.size is None or len(group) - tail_start < cfg.size:
                batches.pop()
                if not last:
                    carry[key] = group.carried(rows[tail_start:])
                elif not cfg.drop_remainder:
                    batches.append((tail_start, len(group)))
            # With static_shapes every batch has a full batch's count (fill rows make up
            # the short last one); the cut stays that of pad_to_bucket.
            full = (_per_batch(cfg, pad_to) or 0) if cfg.static_shapes else 0
            pending += [Planned(group, rows[a:e], pad_to, max(e - a, full)) for a, e in batches]
        for i in rng.permutation(len(pending)) if cfg.shuffle else range(len(pending)):
            yield pending[i]
        pending.clear()  # free this window before the next is read


class WindowReader:
    """Reads the windows of consecutive epochs, each (with ``ahead``) on a thread of its
    own while the window before it is batched (reads and pyarrow's decoding release the
    GIL), and the first window of the next epoch while the last of this one is.

    Reads take turns over three sets of buffers, kept from epoch to epoch (fresh memory
    costs a page fault per page): while window w is batched, w + 1 is read, and the rows
    window w - 1 carried over are still views of its set; so a set is recycled when the
    read three windows later starts. Without reading ahead, two sets take turns. Reads
    run one at a time, in the order they were asked for. One reader serves one stream of
    epochs at a time; `close` ends its thread.
    """

    def __init__(self) -> None:
        self._buffers = (ReadBuffers(), ReadBuffers(), ReadBuffers())
        self._turn = 0
        self._thread: ThreadPoolExecutor | None = None
        self._ahead: tuple[tuple[int, ...], Future] | None = None

    def _load(self, shards: np.ndarray, load: ShardLoader, sets: int) -> Callable[[], list]:
        """The read of one window, into the next of the first ``sets`` sets of buffers."""
        buffers = self._buffers[self._turn % sets]
        self._turn = (self._turn % sets) + 1

        def read() -> list[list[Sequences]]:
            buffers.recycle()  # its window and the window after it are batched by now
            return [load(int(s), buffers) for s in shards]
        return read

    def _submit(self, shards: np.ndarray, load: ShardLoader) -> Future:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="seqdata-read-ahead")
        return self._thread.submit(self._load(shards, load, 3))

    def read(self, windows: list[np.ndarray], load: ShardLoader, after: np.ndarray | None,
             ahead: bool = True, close: bool = False) -> Iterator[list[list[Sequences]]]:
        """The buckets of each window's shards: read ahead on the reader's thread with
        ``ahead``, else each when asked for; then, if ``after`` (the next epoch's first
        window) is given, that window's read is started; with ``close``, `close`."""
        try:
            first = tuple(int(s) for s in windows[0])
            pending, self._ahead = self._ahead, None
            if not ahead:
                if pending is not None:  # its read must not overlap the reads below
                    wait([pending[1]])
                for shards in windows:
                    yield self._load(shards, load, 2)()
                return
            if pending is not None and pending[0] == first:
                future = pending[1]
            else:  # nothing read ahead, or for another epoch than this (its read is dropped)
                future = self._submit(windows[0], load)
            for w in range(len(windows)):
                shards = future.result()
                if w + 1 < len(windows):
                    future = self._submit(windows[w + 1], load)
                elif after is not None:
                    self._ahead = (tuple(int(s) for s in after), self._submit(after, load))
                yield shards
        finally:
            if close:
                self.close()

    def close(self) -> None:
        """Wait for the read in progress (if any) and end the thread."""
        self._ahead = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None


def check_budget(cfg: BatchConfig, boundaries: tuple[int, ...], max_length: int) -> None:
    """Raise SpecError if a budget is smaller than the longest (padded) sequence."""
    if cfg.max_timesteps is None:
        return
    padded = cfg.pad_to_bucket or cfg.static_shapes
    longest = boundaries[-1] if padded else max_length
    if cfg.max_timesteps < longest:
        raise SpecError(f"max_timesteps must be >= {longest} (the longest "
                        f"{'padded ' if padded else ''}sequence), "
                        f"got {cfg.max_timesteps}")
