"""A dependency-free progress line on stderr for long jobs, and sizes for a person."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts units of work and redraws one status line (a plain line when not a TTY).

    >>> p = Progress(total=2, label="shards", enabled=False)
    >>> p.advance(sequences=10); p.advance(sequences=5); p.done
    2
    """

    def __init__(self, total: int, label: str, enabled: bool = True,
                 stream: TextIO | None = None, min_interval: float = 0.2) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.sequences = 0
        self.timesteps = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self._tty = self.stream.isatty()
        self._interval = min_interval if self._tty else 5.0  # keep logs short

    def advance(self, sequences: int = 0, timesteps: int = 0) -> None:
        self.done += 1
        self.sequences += sequences
        self.timesteps += timesteps
        now = time.perf_counter()
        if self.enabled and (self.done in (1, self.total) or now - self._last >= self._interval):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        width = 28
        filled = int(width * self.done / max(self.total, 1))
        line = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total}  {self.sequences:,} sequences  "
                f"{self.timesteps / elapsed / 1e6:.1f}M timesteps/s  {elapsed:.1f}s")
        if self._tty:
            self.stream.write("\r" + line + ("\n" if self.done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def format_bytes(n: int) -> str:
    """``n`` bytes for a person, in decimal units: ``3.5 MB``, ``1,234.5 GB``."""
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"
