"""`FileCache`: what a format learned about a version of a shard file (where its arrays
lie), kept so that later reads of that same version skip the library that found it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, BinaryIO


def file_key(handle: BinaryIO, path: Path, *extra: Hashable) -> tuple:
    """What names the version of the open file ``handle`` (at ``path``): its device,
    inode, size and modification time, and ``extra`` (what the caller read it for)."""
    st = os.fstat(handle.fileno())
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, *extra)


class FileCache:
    """A bounded map from `file_key` to what a format learned from that file.

    Several datasets' read-ahead threads share it; a forked child (a loader worker)
    inherits its entries with a fresh lock, since another thread of the parent may have
    held the lock at the fork. Once ``most`` entries are held, the oldest goes first.
    """

    def __init__(self, most: int = 4096) -> None:
        self._items: dict[tuple, Any] = {}
        self._most = most
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._fresh_lock)

    def _fresh_lock(self) -> None:
        self._lock = threading.Lock()

    def get(self, key: tuple, default: Any = None) -> Any:
        with self._lock:
            return self._items.get(key, default)

    def update(self, key: tuple, change: Callable[[Any], Any], default: Any = None) -> Any:
        """Store ``change(what key holds, or default)`` under ``key``; return it."""
        with self._lock:
            value = change(self._items.pop(key, default))
            if len(self._items) >= self._most:
                self._items.pop(next(iter(self._items)))
            self._items[key] = value
            return value
