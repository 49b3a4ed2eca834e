"""Helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from seqdata import LagSumSpec

ROOT = Path(__file__).resolve().parents[1]

# Several chunks, a partial last one, and a few buckets: small but every path is taken.
SMALL_SPEC = LagSumSpec(num_sequences=300, seed=7, chunk_size=64)


def run_cli(*args: str | os.PathLike, module: str = "seqdata",
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m MODULE ARGS`` in a real subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=ROOT)


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes, to show that nothing changed."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}
