"""`Batch`: the one batch type every framework bridge consumes."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """A right-padded batch of variable-length sequences.

    With ``BatchConfig.static_shapes`` a short batch ends with fill rows, which hold no
    sequence: x and y all 0, mask all False, length 0 and id -1. They count as padding
    (``num_timesteps``, ``padding_fraction``); ``ids >= 0`` selects the real rows.

    Attributes:
        x: float32 (B, L, F) values; padded steps are 0.
        y: uint8 (B, L) per-timestep labels (0 or 1); padded steps are 0.
        mask: bool (B, L), True on real steps; ``mask.sum(axis=1) == lengths``.
        lengths: int32 (B,) real length of each sequence (0 on a fill row).
        ids: int64 (B,) dataset-wide id of each sequence (-1 on a fill row).
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_sequences(self) -> int:
        """Real sequences in the batch (its rows less any fill rows)."""
        return int((self.ids >= 0).sum())

    @property
    def num_timesteps(self) -> int:
        """Real (unpadded) timesteps in the batch."""
        return int(self.lengths.sum())

    @property
    def padding_fraction(self) -> float:
        """Share of the batch's B * L steps that are padding."""
        size = self.mask.size
        return 0.0 if size == 0 else 1.0 - self.num_timesteps / size


def new_batch(rows: int, width: int, features: int) -> Batch:
    """A `Batch` of (rows, width, features) in new, uninitialized arrays."""
    return Batch(np.empty((rows, width, features), np.float32), np.empty((rows, width), np.uint8),
                 np.empty((rows, width), np.bool_), np.empty(rows, np.int32),
                 np.empty(rows, np.int64))


# (rows, width, features) -> a Batch of arrays of those shapes to pad a batch into (a
# loader's shared memory, say); `new_batch` makes new ones.
BatchMemory = Callable[[int, int, int], Batch]

_ALIGN = 64  # every array of a batch starts on a cache line


class BatchArena:
    """A `BatchMemory` that reuses the memory of batches nobody holds any more.

    Fresh memory costs a page fault per page, and whether ``np.empty`` hands a
    batch-sized array fresh memory depends on the allocator's history (glibc moves its
    mmap threshold as large blocks come and go): the same padded epoch took 0.5 s or
    0.85 s in one process. An arena carves each batch's five arrays from one buffer and
    keeps the buffers of its last ``keep`` batches; a buffer is reused once nothing but
    the arena refers to it (each array of a batch, and every view of one, holds it).
    """

    def __init__(self, keep: int = 8) -> None:
        self._buffers: list[np.ndarray] = []
        self._keep = keep
        self._layouts: dict[tuple[int, int, int], tuple[int, list[tuple]]] = {}
        # What getrefcount says of a list's item that nothing else refers to (the list,
        # and the call's own reference, in CPython), measured the way `_buffer` asks.
        probe = [np.empty(0, np.uint8)]
        self._unused = sys.getrefcount(probe[0])

    def __call__(self, rows: int, width: int, features: int) -> Batch:
        size, layout = self._layout(rows, width, features)
        buffer = self._buffer(size + _ALIGN)
        first = -buffer.ctypes.data % _ALIGN
        return Batch(*(np.ndarray(shape, kind, buffer, first + start)
                       for start, kind, shape in layout))

    def _layout(self, rows: int, width: int, features: int) -> tuple[int, list[tuple]]:
        """Bytes a batch of this shape takes, and (offset, dtype, shape) of each array;
        kept per shape (working it out cost a padded batch 30 us)."""
        key = (rows, width, features)
        if key not in self._layouts:
            if len(self._layouts) >= 1024:  # shapes of a few epochs; bounded all the same
                self._layouts.clear()
            shapes = ((rows, width, features), (rows, width), (rows, width), (rows,), (rows,))
            types = (np.float32, np.uint8, np.bool_, np.int32, np.int64)
            layout, at = [], 0
            for shape, kind in zip(shapes, types, strict=True):
                layout.append((at, np.dtype(kind), shape))
                at += -(-math.prod(shape) * np.dtype(kind).itemsize // _ALIGN) * _ALIGN
            self._layouts[key] = at, layout
        return self._layouts[key]

    def _buffer(self, size: int) -> np.ndarray:
        for i in range(len(self._buffers)):
            if (len(self._buffers[i]) >= size
                    and sys.getrefcount(self._buffers[i]) == self._unused):
                self._buffers.append(self._buffers.pop(i))
                return self._buffers[-1]
        buffer = np.empty(size + size // 8, np.uint8)  # headroom: batches differ a little
        self._buffers.append(buffer)
        if len(self._buffers) > self._keep:
            del self._buffers[0]  # forgotten here; whoever holds its batch keeps it alive
        return buffer
