"""`Batch`: the one batch type every framework bridge consumes."""

from __future__ import annotations

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
