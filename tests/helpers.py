"""Helpers shared by the tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from seqdata import LagSumSpec
from seqdata.store.atomic import file_sha256
from seqdata.store.manifest import checksum

ROOT = Path(__file__).resolve().parents[1]

# Several chunks, a partial last one, and a few buckets: small but every path is taken.
SMALL_SPEC = LagSumSpec(num_sequences=300, seed=7, chunk_size=64)
# How long the rest of a killed build may outlive its process: generous, for a loaded
# machine. No test measures speed with it; it only stops waiting.
DEADLINE = 15.0


def run_cli(*args: str | os.PathLike, module: str = "seqdata",
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m MODULE ARGS`` in a real subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=ROOT)


def start_generate(out: Path, *args: str, stdout: int = subprocess.DEVNULL) -> subprocess.Popen:
    """``python -m seqdata generate OUT ARGS`` in a session (and process group) of its own,
    running on: stderr piped, stdout to ``stdout``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "seqdata", "generate", str(out), *args],
                            env=env, cwd=ROOT, start_new_session=True, stdout=stdout,
                            stderr=subprocess.PIPE)


def clean_build(base: Path, spec: LagSumSpec) -> dict[str, bytes]:
    """The `snapshot` of an uninterrupted one-process HDF5 build of ``spec`` under ``base``:
    what a resumed build must equal byte for byte."""
    from seqdata import build_dataset

    build_dataset(base / "ds", spec, "hdf5", progress=False)
    return snapshot(base / "ds")


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes, to show that nothing changed."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def reseal(path: Path, shard: Path) -> None:
    """Update the manifest's hash of ``shard`` (as someone rewriting a shard would)."""
    doc = json.loads((path / "manifest.json").read_text())
    entry = next(s for s in doc["shards"] if s["path"] == shard.relative_to(path).as_posix())
    entry["sha256"], entry["size"] = file_sha256(shard), shard.stat().st_size
    doc["checksum"] = checksum(doc)
    (path / "manifest.json").write_text(json.dumps(doc))


def repack_chunked(shard: Path) -> None:
    """Rewrite an HDF5 shard with chunked, compressed datasets (as another tool might):
    same content, no contiguous byte ranges."""
    import h5py

    with h5py.File(shard, "r") as f:
        groups = {g: {k: f[g][k][()] for k in f[g]} for g in f}
        attrs = dict(f.attrs)
    with h5py.File(shard, "w") as f:
        f.attrs.update(attrs)
        for g, fields in groups.items():
            for k, v in fields.items():
                f.create_dataset(f"{g}/{k}", data=v, chunks=True, compression="gzip")


def run_trainer(*args: str | os.PathLike) -> tuple[int, str, str]:
    """``python -m trainer ARGS`` in a real subprocess: (exit status, stdout, stderr)."""
    result = run_cli(*args, module="trainer")
    return result.returncode, result.stdout, result.stderr


def assert_one_line_error(result: tuple[int, str, str], *needles: str) -> str:
    """Exit 2, one line on stderr from the trainer naming the problem, no traceback;
    the line."""
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("trainer")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def rewrite_parquet(shard: Path, **options) -> None:
    """Rewrite a Parquet shard with pyarrow: the same schema and row groups, written with
    ``ParquetWriter`` ``options`` (another tool's rewrite)."""
    import pyarrow.parquet as pq

    table = pq.read_table(shard)
    pf = pq.ParquetFile(shard)
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    with pq.ParquetWriter(shard, table.schema, **options) as writer:
        start = 0
        for n in sizes:
            writer.write_table(table.slice(start, n), row_group_size=n)
            start += n


def group_states(pgid):
    """The state letter and parent of each process of group ``pgid``, from /proc (none
    where there is no /proc)."""
    states = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        state, parent, group = stat[stat.rindex(")") + 2:].split()[:3]
        if int(group) == pgid:
            states[int(entry)] = (state, int(parent))
    return states


def group_members(pgid):
    """The processes of group ``pgid`` still alive (a zombie has ended and holds nothing)."""
    return [pid for pid, (state, _) in group_states(pgid).items() if state not in "ZX"]


def survivors(pgid):
    """Wait for every process of group ``pgid`` to end; those still alive at the deadline
    (killed then, so that no test leaves any behind)."""
    end = time.monotonic() + DEADLINE
    while (alive := group_members(pgid)) and time.monotonic() < end:
        time.sleep(0.02)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive
