"""Atomic publication of files: temporary name, fsync, rename.

A reader either sees the complete file at its final path or no file there; a failed
write (disk full, permission denied) removes its temporary file and says what failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

from seqdata.errors import OutputError

TMP_SUFFIX = ".tmp"


def temporary_path(path: Path) -> Path:
    """``STEM.PID.tmp.SUFFIX``: unique per process, so two writers never share a temporary
    file, and the suffix stays (Keras, for one, insists on ``.keras``)."""
    return path.with_name(f"{path.stem}.{os.getpid()}{TMP_SUFFIX}{path.suffix}")


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory: so that a rename in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to ``path``.

    On any error the temporary file is removed; OS errors become an OutputError naming
    ``path`` (disk full, permission denied, ...).
    """
    tmp = temporary_path(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
        raise


def write_bytes_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` so that ``path`` never holds a partial file."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hashed from a memory map (no copies)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return hashlib.sha256(b"").hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return hashlib.sha256(view).hexdigest()
