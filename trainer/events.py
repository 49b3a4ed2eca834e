"""TensorBoard event files, written without TensorFlow.

An event file is a TFRecord stream (each record: its length as uint64, a masked CRC-32C
of the length, the bytes, a masked CRC-32C of the bytes) of ``tensorflow.Event``
protobufs: first ``file_version``, then one ``summary`` per scalar, each a
``Summary.Value`` with ``tag`` and ``simple_value``, which TensorBoard's scalars
dashboard reads. The few protobuf fields needed are encoded here by hand.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from pathlib import Path

_counter = itertools.count()


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord: framing around ``data``."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", _masked(crc32c(length))) + data
            + struct.pack("<I", _masked(crc32c(data))))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _field(number, 2, _varint(len(payload)) + payload)


def event(wall_time: float, step: int = 0, *, file_version: str | None = None,
          tag: str | None = None, value: float = 0.0) -> bytes:
    """An ``Event`` protobuf: a file version, or one scalar ``tag`` = ``value``."""
    out = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        return out + _bytes_field(3, file_version.encode())
    scalar = _bytes_field(1, tag.encode()) + _field(2, 5, struct.pack("<f", value))
    return out + _bytes_field(5, _bytes_field(1, scalar))


class EventWriter:
    """Scalars appended to a new ``events.out.tfevents.*`` file in ``log_dir``."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = log_dir / (f"events.out.tfevents.{int(now)}.{socket.gethostname()}."
                               f"{os.getpid()}.{next(_counter)}.v2")
        self._file = open(self.path, "ab")  # noqa: SIM115 (closed by close())
        self._file.write(record(event(now, file_version="brain.Event:2")))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Append one scalar."""
        self._file.write(record(event(time.time(), step, tag=tag, value=float(value))))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
