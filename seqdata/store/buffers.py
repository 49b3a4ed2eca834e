"""Reading whole shard files into memory, into buffers reused from window to window."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from seqdata.errors import ShardError
from seqdata.store.atomic import open_regular


class ReadBuffers:
    """Byte buffers reused from one window of shards to the next.

    Fresh memory costs a page fault per page at first touch, which here is as slow as
    the read itself; a reader that is done with a window's arrays recycles its buffers.
    """

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._used: list[np.ndarray] = []

    def get(self, size: int) -> np.ndarray:
        """A buffer of ``size`` bytes, valid until `recycle`."""
        buf = self._free.pop() if self._free else np.empty(0, np.uint8)
        if len(buf) < size:
            buf = np.empty(size + size // 16, np.uint8)  # headroom: shards differ a little
        self._used.append(buf)
        return buf[:size]

    def recycle(self) -> None:
        """Make every buffer handed out so far available again."""
        self._free += self._used
        self._used = []


def read_file(path: Path, buffers: ReadBuffers | None = None) -> np.ndarray:
    """A file's bytes, read with one call into a new array or one from ``buffers``."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            data = np.empty(size, np.uint8) if buffers is None else buffers.get(size)
            view, done = memoryview(data), 0
            while done < len(data):
                got = f.readinto(view[done:])
                if not got:
                    raise ShardError(f"shard {path} shrank while it was read")
                done += got
    except OSError as e:
        raise ShardError(f"shard {path} cannot be read: {e.strerror or e}") from None
    return data


# bucket -> (byte offset of its x, byte offset of its y, its timesteps) in one file
SpanBases = dict[int, tuple[int, int, int]]


def read_spans_into(fd: int, path: Path, bases: SpanBases, spans: np.ndarray,
                    x_out: np.ndarray, y_out: np.ndarray) -> None:
    """Copy runs of timesteps of a file holding each bucket's x (float32, F a step) and y
    (uint8) contiguous, at ``bases``: run i is timesteps ``spans[i, 1]:spans[i, 2]`` of
    bucket ``spans[i, 0]``, written to ``x_out`` / ``y_out`` from row ``spans[i, 3]``.
    One ``preadv`` for each run's x and one for its y, straight into the outputs."""
    step = x_out.itemsize * x_out.shape[1]
    x_bytes = memoryview(x_out.reshape(-1).view(np.uint8))
    y_bytes = memoryview(y_out)
    for bucket, start, stop, at in spans.tolist():
        x_at, y_at, total = bases[bucket]
        if not 0 <= start <= stop <= total:
            raise ShardError(f"shard {path} bucket {bucket}: timesteps {start}:{stop} asked "
                             f"for, it holds {total}")
        n = stop - start
        if not 0 <= at <= min(len(x_out), len(y_out)) - n:
            raise ValueError(f"timesteps {start}:{stop} written from row {at} do not fit "
                             f"outputs of {len(x_out)} and {len(y_out)} rows")
        if (os.preadv(fd, [x_bytes[at * step:(at + n) * step]], x_at + start * step) != n * step
                or os.preadv(fd, [y_bytes[at:at + n]], y_at + start) != n):
            raise ShardError(f"shard {path} ended early: truncated")
