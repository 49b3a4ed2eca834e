import json

import numpy as np
import pytest

from seqdata import LagSumSpec, OutputError, build_dataset, open_dataset
from seqdata.store.build import shard_name
from tests.helpers import SMALL_SPEC, snapshot


def test_worker_count_does_not_change_a_byte(tmp_path):
    for fmt in ("hdf5", "parquet"):
        one = build_dataset(tmp_path / f"{fmt}1", SMALL_SPEC, fmt, workers=1, progress=False)
        two = build_dataset(tmp_path / f"{fmt}2", SMALL_SPEC, fmt, workers=3, progress=False)
        assert one == two
        assert snapshot(tmp_path / f"{fmt}1") == snapshot(tmp_path / f"{fmt}2")


def test_rebuilding_is_byte_identical(tmp_path, datasets):
    build_dataset(tmp_path / "again", SMALL_SPEC, "parquet", num_buckets=6, progress=False)
    assert snapshot(tmp_path / "again") == snapshot(datasets["parquet"])


def test_formats_hold_the_same_sequences(h5_dataset, pq_dataset):
    a, b = h5_dataset.read_all(), pq_dataset.read_all()
    for field in ("x", "y", "offsets", "ids"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for bucket in range(len(h5_dataset.boundaries)):
        np.testing.assert_array_equal(h5_dataset.read_bucket(bucket).x,
                                      pq_dataset.read_bucket(bucket).x)


def test_dataset_holds_every_id_once_in_its_bucket(h5_dataset):
    ds = h5_dataset
    assert ds.num_sequences == SMALL_SPEC.num_sequences
    assert len(ds.shards) == SMALL_SPEC.num_chunks == 5
    seen = []
    lows = [SMALL_SPEC.lengths.low, *(b + 1 for b in ds.boundaries[:-1])]
    for b in range(len(ds.boundaries)):
        part = ds.read_bucket(b)
        assert len(part) == ds.bucket_sequences[b]
        assert part.num_timesteps == ds.bucket_timesteps[b]
        if len(part):
            assert lows[b] <= part.lengths.min() and part.lengths.max() <= ds.boundaries[b]
        seen.append(part.ids)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(ds.num_sequences))


def test_manifest_records_the_histogram_and_counts(h5_dataset):
    m = h5_dataset.manifest
    lengths = h5_dataset.read_all().lengths
    counts = np.bincount(lengths - SMALL_SPEC.lengths.low,
                         minlength=SMALL_SPEC.lengths.high - SMALL_SPEC.lengths.low + 1)
    assert list(m.length_counts) == counts.tolist()
    assert m.num_timesteps == lengths.sum()
    doc = json.loads((h5_dataset.root / "manifest.json").read_text())
    assert doc["manifest_version"] == 1 and doc["format"] == "hdf5"
    assert doc["shards"][0]["path"] == shard_name(0, "hdf5")
    assert len(doc["shards"][0]["sha256"]) == 64


def test_no_temporary_files_are_left(datasets):
    for path in datasets.values():
        assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]


def test_refuses_a_non_empty_directory_and_keeps_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="is not empty"):
        build_dataset(out, SMALL_SPEC, progress=False)
    with pytest.raises(OutputError, match="not part of a seqdata dataset"):
        build_dataset(out, SMALL_SPEC, overwrite=True, progress=False)
    assert snapshot(out) == {"notes.txt": b"mine"}


def test_overwrite_replaces_a_dataset(tmp_path):
    out = tmp_path / "out"
    build_dataset(out, SMALL_SPEC, "parquet", progress=False)
    with pytest.raises(OutputError, match="pass overwrite=True"):
        build_dataset(out, SMALL_SPEC, "hdf5", progress=False)
    small = LagSumSpec(num_sequences=20, seed=1)
    build_dataset(out, small, "hdf5", overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.h5"]
    assert open_dataset(out).spec == small


def test_a_file_as_output_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        build_dataset(target, SMALL_SPEC, progress=False)


def test_shards_are_synced_before_the_manifest(tmp_path, monkeypatch):
    import seqdata.store.build

    events = []
    real_fsync, real_manifest = seqdata.store.build.fsync_path, seqdata.store.build.write_manifest
    monkeypatch.setattr(seqdata.store.build, "fsync_path",
                        lambda path: (events.append(path.name), real_fsync(path)))
    monkeypatch.setattr(seqdata.store.build, "write_manifest",
                        lambda out, m: (events.append("write_manifest"), real_manifest(out, m)))
    out = tmp_path / "ds"
    manifest = build_dataset(out, SMALL_SPEC, workers=2, progress=False)
    shards = [s.path for s in manifest.shards]
    assert len(shards) > 1
    assert events == [*shards, out.name, "write_manifest"]


def test_reused_buffers_give_the_bytes_of_fresh_ones(tmp_path):
    from seqdata.store.build import ShardBuffers, build_shard, resolve_boundaries

    # Shards of different sizes through one set of buffers, which shrink and grow.
    spec = LagSumSpec(num_sequences=2500, chunk_size=1000)
    boundaries = resolve_boundaries(spec)
    reused, fresh = tmp_path / "reused", tmp_path / "fresh"
    reused.mkdir()
    fresh.mkdir()
    for fmt in ("hdf5", "parquet"):
        buffers = ShardBuffers()
        for chunk in (1, 2, 0, 2):
            info, counts = build_shard(spec, chunk, fmt, boundaries, str(reused), buffers)
            fresh_info, fresh_counts = build_shard(spec, chunk, fmt, boundaries, str(fresh))
            assert info == fresh_info
            np.testing.assert_array_equal(counts, fresh_counts)
            name = shard_name(chunk, fmt)
            assert (reused / name).read_bytes() == (fresh / name).read_bytes()


def test_a_dying_worker_is_a_clear_error(tmp_path):
    """A script without a main guard makes every forkserver worker re-run it and die."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    script = tmp_path / "no_guard.py"
    script.write_text("from seqdata import LagSumSpec, build_dataset\n"
                      f"build_dataset({str(tmp_path / 'out')!r}, LagSumSpec(num_sequences=400, "
                      "chunk_size=100), workers=2, progress=False)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "a generation worker for" in last and "__main__" in last and "resume=True" in last
