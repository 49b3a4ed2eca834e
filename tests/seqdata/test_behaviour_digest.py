"""The same shard bytes and the same batches for the same seed, whatever the code's layout.

``behaviour_digest.json`` was written by the code as it stood before the bridges-layer
move (``python tests/seqdata/test_behaviour_digest.py --write``): the SHA-256 of every
file of a small build in both formats, the decoded content of its shards, and a hash of
every batch (ids, lengths, x, y, mask) of one epoch for a range of batching options.
Shard bytes depend on the HDF5 and Parquet writers' versions as well as on our code, so
they are compared when those versions are the ones the digest was made with; content
and batches are compared always.

The directory layout changed since (manifest_version 2: shards moved into ``data/``, a
card ``README.md``): the digest's shard hashes are the ones written before the move, only
renamed ``shard-N`` -> ``data/shard-N``; ``manifest.json`` and ``README.md`` are new.
``old_layout_manifest`` keeps the hash of the version 1 manifest written before the move:
the version 2 manifest turned back (version 1, paths without ``data/``) must hash the
same, so the manifest changed in nothing else.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pyarrow

from seqdata import LagSumSpec, build_dataset, open_dataset
from seqdata.store.manifest import checksum

DIGEST = Path(__file__).with_name("behaviour_digest.json")
SPEC = LagSumSpec(num_sequences=500, seed=11, chunk_size=96)
OPTIONS = {
    "bucketed-16": {"mode": "bucketed", "batch_size": 16},
    "bucketed-budget": {"mode": "bucketed", "max_timesteps": 700},
    "bucketed-pad-to-bucket": {"mode": "bucketed", "batch_size": 9, "pad_to_bucket": True},
    "bucketed-same-length-drop": {"mode": "bucketed", "batch_size": 4, "same_length": True,
                                  "drop_remainder": True},
    "bucketed-per-sequence-epoch-3": {"mode": "bucketed", "batch_size": 12,
                                      "shuffle_block": 1, "epoch": 3, "seed": 5},
    "padded-32": {"mode": "padded", "batch_size": 32},
    "padded-budget-window-1": {"mode": "padded", "max_timesteps": 900, "window_shards": 1},
    "padded-unshuffled": {"mode": "padded", "batch_size": 50, "shuffle": False},
}


def versions() -> dict[str, str]:
    return {"h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
            "pyarrow": pyarrow.__version__}


def batches_digest(ds, options: dict) -> str:
    h = hashlib.sha256()
    for batch in ds.batches(**options):
        for array in (batch.ids, batch.lengths, batch.x, batch.y, batch.mask):
            h.update(str(array.shape).encode())
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def content_digest(ds) -> str:
    flat = ds.read_all()
    h = hashlib.sha256()
    for array in (flat.ids, flat.offsets, flat.x, flat.y):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def old_layout_manifest(path: Path) -> bytes:
    """The manifest.json that the version 1 layout wrote for the dataset at ``path``."""
    doc = json.loads((path / "manifest.json").read_text())
    doc["manifest_version"] = 1
    for shard in doc["shards"]:
        shard["path"] = shard["path"].removeprefix("data/")
    doc["checksum"] = checksum(doc)
    return (json.dumps(doc, indent=1) + "\n").encode()


def compute(root: Path) -> dict:
    out: dict = {"versions": versions(), "files": {}, "old_layout_manifest": {},
                 "content": {}, "batches": {}}
    for fmt in ("hdf5", "parquet"):
        path = root / fmt
        build_dataset(path, SPEC, fmt, num_buckets=5, progress=False)
        out["files"][fmt] = {p.relative_to(path).as_posix():
                             hashlib.sha256(p.read_bytes()).hexdigest()
                             for p in sorted(path.rglob("*")) if p.is_file()}
        out["old_layout_manifest"][fmt] = hashlib.sha256(old_layout_manifest(path)).hexdigest()
        ds = open_dataset(path)
        out["content"][fmt] = content_digest(ds)
        out["batches"][fmt] = {name: batches_digest(ds, o) for name, o in OPTIONS.items()}
    return out


def test_same_shards_and_batches_as_before_the_move(tmp_path):
    stored = json.loads(DIGEST.read_text())
    now = compute(tmp_path)
    assert now["batches"] == stored["batches"]
    assert now["content"] == stored["content"]
    # Both formats hold the same sequences and give the same batches.
    assert now["content"]["hdf5"] == now["content"]["parquet"]
    assert now["batches"]["hdf5"] == now["batches"]["parquet"]
    for fmt in ("hdf5", "parquet"):
        writer = ("h5py", "hdf5") if fmt == "hdf5" else ("pyarrow",)
        if all(now["versions"][k] == stored["versions"][k] for k in writer):
            assert now["files"][fmt] == stored["files"][fmt], fmt
            assert now["old_layout_manifest"][fmt] == stored["old_layout_manifest"][fmt], fmt
        else:
            warnings.warn(f"{fmt} shard bytes not compared: writer versions "
                          f"{ {k: now['versions'][k] for k in writer} } differ from the "
                          f"digest's", stacklevel=1)
            assert sorted(now["files"][fmt]) == sorted(stored["files"][fmt])


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/seqdata/test_behaviour_digest.py --write")
    with tempfile.TemporaryDirectory() as tmp:
        DIGEST.write_text(json.dumps(compute(Path(tmp)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGEST}")
