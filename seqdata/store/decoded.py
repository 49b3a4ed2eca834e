"""Shards decoded once into flat files, which every loader worker reads byte ranges of.

A Parquet row group cannot be read in part (values and list levels interleave in its
pages), so each of W loader workers would decode every shard of every epoch. In a
`DecodedShards` directory (in shared memory, made by the loader) each shard is decoded
once and kept as HDF5 keeps it: each bucket's ``x`` after the other, then each bucket's
``y``, contiguous. The first worker to need a shard decodes it and publishes the file
(written under a temporary name, then renamed); a worker that needs it meanwhile waits on
the shard's lock (``flock``: released by the kernel if its holder dies) and then reads
byte ranges of it, as of an HDF5 shard.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from seqdata.sequences import Sequences
from seqdata.store.buffers import read_spans_into


class DecodedShards:
    """A directory of decoded shards, shared by the processes that read one dataset."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"DecodedShards({str(self.directory)!r})"

    def read_spans(self, index: int, bucket_timesteps: Sequence[int], num_features: int,
                   decode: Callable[[], list[Sequences]], spans: np.ndarray,
                   x_out: np.ndarray, y_out: np.ndarray, wait: bool = True) -> bool | None:
        """Runs of timesteps of shard ``index`` (see `read_spans_into`) from its decoded
        file, which ``decode()`` (all its buckets) makes if no process has yet. False,
        having read nothing, if the file cannot be made (the directory is gone or full);
        None, without ``wait``, if another process is making it."""
        path = self.directory / f"shard-{index:06d}.raw"
        try:
            fd = self._open(path, decode, wait)
        except OSError:
            return False
        if fd is None:
            return None
        cum = np.zeros(len(bucket_timesteps) + 1, np.int64)
        np.cumsum(bucket_timesteps, out=cum[1:])
        step = 4 * num_features
        bases = {b: (int(cum[b]) * step, int(cum[-1]) * step + int(cum[b]),
                     int(bucket_timesteps[b])) for b in range(len(bucket_timesteps))}
        try:
            read_spans_into(fd, path, bases, spans, x_out, y_out)
        finally:
            os.close(fd)
        return True

    @staticmethod
    def _open(path: Path, decode: Callable[[], list[Sequences]], wait: bool) -> int | None:
        """A descriptor of ``path``, made first (under its lock) if it does not exist;
        None, without ``wait``, if another process holds the lock."""
        with contextlib.suppress(FileNotFoundError):
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        lock = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return None
            if not path.exists():  # else made while this process waited for the lock
                parts = decode()
                temporary = path.with_suffix(f".{os.getpid()}.tmp")
                try:
                    with open(temporary, "wb") as f:
                        for field in ("x", "y"):
                            for part in parts:
                                f.write(np.ascontiguousarray(getattr(part, field)).data)
                    os.replace(temporary, path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(temporary)
                    raise
        finally:
            os.close(lock)  # and with it the lock
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
