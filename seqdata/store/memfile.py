"""`MemoryFile`: a seekable in-memory file that keeps its buffer from one use to the next.

Shards are encoded into one (HDF5 through h5py's file-object driver, Parquet through
pyarrow's Python-file adapter), hashed from memory and written to disk with one call.
"""

from __future__ import annotations

import numpy as np


class MemoryFile:
    """A binary file in memory: the methods h5py and pyarrow call on a Python file.

    `reset` empties it but keeps the buffer (already mapped, already faulted in), so the
    next shard of about the same size allocates nothing. As in a real file, bytes between
    the end and a write past it read as zeros.
    """

    def __init__(self) -> None:
        self._buffer = np.empty(0, np.uint8)
        self._size = 0
        self._pos = 0
        self.closed = False

    def reset(self, capacity: int = 0) -> None:
        """Empty the file, growing the buffer to at least ``capacity`` bytes."""
        self._size = self._pos = 0
        self.closed = False
        if len(self._buffer) < capacity:
            self._buffer = np.empty(capacity, np.uint8)

    def getbuffer(self) -> memoryview:
        """The file's bytes, without a copy: valid until the next `reset` or write."""
        return memoryview(self._buffer[:self._size])

    def _reserve(self, capacity: int) -> None:
        if capacity > len(self._buffer):
            grown = np.empty(max(capacity, len(self._buffer) * 3 // 2), np.uint8)
            grown[:self._size] = self._buffer[:self._size]
            self._buffer = grown

    def _extend(self, end: int) -> None:
        """Make the file ``end`` bytes long, the new bytes zero."""
        self._reserve(end)
        self._buffer[self._size:end] = 0
        self._size = end

    def write(self, data: bytes | memoryview) -> int:
        view = np.frombuffer(data, np.uint8)
        end = self._pos + len(view)
        if self._pos > self._size:
            self._extend(self._pos)
        self._reserve(end)
        self._buffer[self._pos:end] = view
        self._size = max(self._size, end)
        self._pos = end
        return len(view)

    def readinto(self, out: bytearray | memoryview) -> int:
        target = np.frombuffer(out, np.uint8)
        n = max(0, min(len(target), self._size - self._pos))
        target[:n] = self._buffer[self._pos:self._pos + n]
        self._pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        end = self._size if n < 0 else min(self._size, self._pos + n)
        data = self._buffer[self._pos:end].tobytes() if end > self._pos else b""
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._size)[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if size > self._size:
            self._extend(size)
        else:
            self._size = size
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True
