"""`BatchStream`: the batches of consecutive epochs as one numbered stream.

Every bridge and the trainer take their batches from here, so that "batch ``g`` of a
run" means the same thing everywhere and a resumed run can start at any ``g``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Protocol

import numpy as np

from seqdata.errors import SpecError
from seqdata.read.batch import Batch
from seqdata.read.batching import WindowReader
from seqdata.read.config import BatchConfig


class BatchSource(Protocol):
    """What a stream needs of a dataset: `seqdata.read.dataset.Dataset` is one."""

    def batches(self, config: BatchConfig, /, *, reader: WindowReader | None = None,
                then: BatchConfig | None = None) -> Iterator[Batch]: ...

    def num_batches(self, config: BatchConfig, /) -> int: ...


class NoBatchesError(SpecError):
    """An epoch of the data has no batches with the config given."""

    def __init__(self, epoch: int, config: BatchConfig) -> None:
        super().__init__(f"the data yields no batches in epoch {epoch} with {config} "
                         "(too few sequences for the batch size with drop_remainder?)")


class BatchStream:
    """The batches of consecutive epochs as one numbered stream, with per-batch stats.

    Batch ``g`` of the stream is batch ``g - start`` after the first ``start`` batches of
    epochs ``config.epoch``, ``config.epoch + 1``, ... (epoch ``e`` from
    ``replace(config, epoch=e)``), so a training
    epoch of ``S`` steps that starts at ``k * S`` sees the same batches whether or not the
    run was resumed. With ``track``, the real and total step counts and the ids of every
    yielded batch are kept until taken (a consumer that prefetches would count wrong at
    consumption); without it nothing is kept, so an endless stream holds no memory for
    batches it has yielded.

    Args:
        source: the dataset.
        config: batching config: its ``epoch`` is the stream's first (its ``start`` is
            the stream's to set).
        start: index of the first batch to yield.
        repeat: continue into the next epochs; otherwise stop after the first epoch.
        track: keep each batch's stats and ids until `take_stats` / `take_ids` /
            `forget_ids` take them (the trainer's step log does).
    """

    def __init__(self, source: BatchSource, config: BatchConfig, *, start: int = 0,
                 repeat: bool = True, track: bool = False) -> None:
        self.source = source
        self.config = config
        self.start = start
        self.repeat = repeat
        self.track = track
        self.error: BaseException | None = None
        self._stats: dict[int, tuple[int, int]] = {}
        self._ids: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def epoch_config(self, epoch: int, start: int = 0) -> BatchConfig:
        """The config of data epoch ``epoch``, skipping its first ``start`` batches."""
        return replace(self.config, epoch=epoch, start=start)

    def epoch_size(self, epoch: int) -> int:
        """Number of batches of data epoch ``epoch``."""
        return int(self.source.num_batches(self.epoch_config(epoch)))

    def _batches(self) -> Iterator[Batch]:
        epoch, skip = self.config.epoch, self.start
        while True:
            size = self.epoch_size(epoch)
            if size < 1:
                raise NoBatchesError(epoch, self.config)
            if skip < size:
                break
            skip -= size
            epoch += 1
        # One reader for every epoch: the next epoch's first window is read while this
        # epoch's last is batched, into buffers kept from epoch to epoch.
        reader = WindowReader()
        try:
            for e in itertools.count(epoch) if self.repeat else (epoch,):
                then = self.epoch_config(e + 1) if self.repeat else None
                yield from self.source.batches(self.epoch_config(e, start=skip), reader=reader,
                                               then=then)
                skip = 0
        finally:
            reader.close()

    def __iter__(self) -> Iterator[Batch]:
        """The batches from ``start`` on; an error is also kept in ``error`` (a consumer
        such as tf.data may bury it in its own)."""
        batches = self._batches()
        try:
            for index, batch in enumerate(batches, start=self.start):
                if self.track:
                    with self._lock:
                        self._stats[index] = (batch.num_timesteps, int(batch.mask.size))
                        self._ids[index] = batch.ids.copy()  # not the batch's memory
                yield batch
        except Exception as exc:
            self.error = exc
            raise
        finally:
            batches.close()  # now, not when collected: its reader's thread ends with it

    def take_ids(self, index: int) -> np.ndarray:
        """The sequence ids of batch ``index`` (forgotten once taken)."""
        self._check_tracked()
        with self._lock:
            return self._ids.pop(index)

    def forget_ids(self, stop: int) -> None:
        """Drop the ids of batches before ``stop`` (when no log takes them)."""
        with self._lock:
            for index in [i for i in self._ids if i < stop]:
                del self._ids[index]

    def take_stats(self, first: int, stop: int) -> tuple[int, int]:
        """Sum of (real, total) timesteps of batches ``first .. stop-1``; forgets them."""
        self._check_tracked()
        real = total = 0
        with self._lock:
            for index in range(first, stop):
                r, t = self._stats.pop(index, (0, 0))
                real, total = real + r, total + t
        return real, total

    def _check_tracked(self) -> None:
        if not self.track:
            raise ValueError("this BatchStream keeps no stats or ids of its batches: "
                             "make it with BatchStream(..., track=True)")
