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
