"""Atomic publication of files: temporary name, fsync, rename.

A reader either sees the complete file at its final path or no file there; a failed
write (disk full, permission denied) removes its temporary file and says what failed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from seqdata.errors import OutputError

TMP_SUFFIX = ".tmp"


def temporary_path(path: Path) -> Path:
    return path.with_name(path.name + TMP_SUFFIX)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` so that ``path`` never holds a partial file."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
