"""`Sequences`: many variable-length sequences held as flat arrays plus offsets.

This is the one in-memory form used from generation to batching: sequence ``i`` is
``x[offsets[i]:offsets[i+1]]``. Flat arrays are what HDF5 and Arrow store, so reading and
writing never loops over sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sequences:
    """Variable-length sequences, flat.

    Attributes:
        x: float32 (T, F) values of all timesteps, sequence after sequence.
        y: uint8 (T,) per-timestep labels.
        offsets: int64 (n + 1,) start of each sequence in ``x``; ``offsets[-1] == T``.
        ids: int64 (n,) the dataset-wide id of each sequence.
    """

    x: np.ndarray
    y: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int32)

    @property
    def num_timesteps(self) -> int:
        return int(self.offsets[-1] - self.offsets[0])

    def sequence(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Values (L, F) and labels (L,) of the i-th sequence (views)."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.x[a:b], self.y[a:b]

    def slice(self, start: int, stop: int) -> Sequences:
        """Sequences ``start:stop`` as views, offsets rebased to 0."""
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        return Sequences(self.x[a:b], self.y[a:b], self.offsets[start:stop + 1] - a,
                         self.ids[start:stop])

    def take(self, rows: np.ndarray) -> Sequences:
        """Sequences ``rows`` (in that order) copied into new flat arrays."""
        lengths = np.diff(self.offsets)[rows]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        src = step_index(self.offsets[rows], lengths, offsets)
        return Sequences(self.x[src], self.y[src], offsets, self.ids[rows])

    @staticmethod
    def concat(parts: Sequence[Sequences], num_features: int) -> Sequences:
        """One `Sequences` holding ``parts`` in order."""
        if not parts:
            return Sequences.empty(num_features)
        if len(parts) == 1:
            return parts[0]
        sizes = np.array([p.num_timesteps for p in parts], dtype=np.int64)
        shifts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        offsets = np.concatenate(
            [np.asarray([0], np.int64)]
            + [(p.offsets[1:] - p.offsets[0]) + s for p, s in zip(parts, shifts, strict=True)])
        return Sequences(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                         offsets, np.concatenate([p.ids for p in parts]))

    @staticmethod
    def empty(num_features: int) -> Sequences:
        return Sequences(np.zeros((0, num_features), np.float32), np.zeros(0, np.uint8),
                         np.zeros(1, np.int64), np.zeros(0, np.int64))


def step_index(starts: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Flat source index of every step of sequences starting at ``starts``.

    ``offsets`` is the cumulative sum of ``lengths`` with a leading 0.
    """
    return np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
