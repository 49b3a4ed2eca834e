import json

import numpy as np
import pytest

from seqdata import LagSumSpec, OutputError, build_dataset, open_dataset, verify_dataset
from seqdata.store.build import shard_name, shard_path
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
    assert doc["manifest_version"] == 2 and doc["format"] == "hdf5"
    assert doc["shards"][0]["path"] == shard_path(0, "hdf5") == "data/shard-00000.h5"
    assert len(doc["shards"][0]["sha256"]) == 64


def test_no_temporary_files_are_left(datasets):
    for path in datasets.values():
        assert not [p for p in path.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_the_layout_is_a_card_a_manifest_and_shards_alone_in_data(datasets, fmt):
    path = datasets[fmt]
    suffix = {"hdf5": ".h5", "parquet": ".parquet"}[fmt]
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "data", "manifest.json"]
    assert sorted(p.name for p in (path / "data").iterdir()) == [
        f"shard-{c:05d}{suffix}" for c in range(SMALL_SPEC.num_chunks)]


def test_shard_temporaries_are_never_in_data(tmp_path, monkeypatch):
    """Directory-level readers of data/ (DuckDB's glob matches dot files too) never meet a
    partial file: a shard's temporary file is written beside the manifest, then renamed."""
    import os

    import seqdata.store.atomic

    seen = []
    real = os.replace

    def watch(src, dst):
        seen.append((os.path.dirname(src), os.path.dirname(dst)))
        real(src, dst)

    monkeypatch.setattr(seqdata.store.atomic.os, "replace", watch)
    out = tmp_path / "ds"
    build_dataset(out, SMALL_SPEC, "parquet", progress=False)
    assert seen.count((str(out), str(out / "data"))) == SMALL_SPEC.num_chunks
    assert all(src == str(out) for src, _ in seen)


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
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "README.md", "data", "data/shard-00000.h5", "manifest.json"]
    assert open_dataset(out).spec == small


def test_overwrite_refuses_a_foreign_readme_or_data(tmp_path):
    """README.md and data/ are build files only when seqdata wrote them: someone's own
    README, a file in data/ that is not a shard, data/ as a link or a file: refused."""
    out = tmp_path / "out"
    build_dataset(out, SMALL_SPEC, progress=False)
    (out / "README.md").write_text("# my notes\n")
    with pytest.raises(OutputError, match=r"not part of a seqdata dataset \(README.md\)"):
        build_dataset(out, SMALL_SPEC, overwrite=True, progress=False)
    build_dataset(tmp_path / "again", SMALL_SPEC, progress=False)
    (out / "README.md").write_bytes((tmp_path / "again" / "README.md").read_bytes())
    (out / "data" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"\(data/notes.txt\)"):
        build_dataset(out, SMALL_SPEC, overwrite=True, progress=False)
    (out / "data" / "notes.txt").unlink()
    before = snapshot(out)
    elsewhere = tmp_path / "elsewhere"
    (out / "data").rename(elsewhere)
    (out / "data").symlink_to(elsewhere)
    for options in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(OutputError, match=r"data is a symbolic link, expected the "
                                              r"directory of a seqdata dataset's shards"):
            build_dataset(out, SMALL_SPEC, progress=False, **options)
    assert len(list(elsewhere.iterdir())) == SMALL_SPEC.num_chunks  # nothing removed there
    (out / "data").unlink()
    (out / "data").write_text("x")
    with pytest.raises(OutputError, match=r"data is not a directory"):
        build_dataset(out, SMALL_SPEC, overwrite=True, progress=False)
    (out / "data").unlink()
    elsewhere.rename(out / "data")
    assert snapshot(out) == before
    build_dataset(out, SMALL_SPEC, "parquet", overwrite=True, progress=False)
    assert verify_dataset(out).ok


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
    shards = [s.path.removeprefix("data/") for s in manifest.shards]
    assert len(shards) > 1
    assert events == [*shards, "data", out.name, "write_manifest"]


def test_reused_buffers_give_the_bytes_of_fresh_ones(tmp_path):
    from seqdata.store.build import ShardBuffers, build_shard, resolve_boundaries

    # Shards of different sizes through one set of buffers, which shrink and grow.
    spec = LagSumSpec(num_sequences=2500, chunk_size=1000)
    boundaries = resolve_boundaries(spec)
    reused, fresh = tmp_path / "reused", tmp_path / "fresh"
    (reused / "data").mkdir(parents=True)
    (fresh / "data").mkdir(parents=True)
    for fmt in ("hdf5", "parquet"):
        buffers = ShardBuffers()
        for chunk in (1, 2, 0, 2):
            info, counts = build_shard(spec, chunk, fmt, boundaries, str(reused), buffers)
            fresh_info, fresh_counts = build_shard(spec, chunk, fmt, boundaries, str(fresh))
            assert info == fresh_info
            np.testing.assert_array_equal(counts, fresh_counts)
            name = shard_path(chunk, fmt)
            assert name == f"data/{shard_name(chunk, fmt)}"
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


def test_a_locked_directory_is_refused_naming_its_holder(tmp_path):
    import os

    from seqdata.store.lock import build_lock

    out = tmp_path / "ds"
    build_dataset(out, SMALL_SPEC, progress=False)
    with build_lock(out):  # as a running build holds it
        before = snapshot(out)
        for options in ({}, {"overwrite": True}, {"resume": True}):
            with pytest.raises(OutputError) as error:
                build_dataset(out, SMALL_SPEC, progress=False, **options)
            assert str(error.value) == (f"{out} is being built by process {os.getpid()}; wait "
                                        f"for it to end or stop it")
        assert snapshot(out) == before
    assert snapshot(out) == {k: v for k, v in before.items() if k != ".seqdata-build.lock"}


def test_a_stale_lock_file_is_taken_over_and_removed(tmp_path):
    from seqdata import verify_dataset
    from seqdata.store.lock import LOCK_NAME
    from tests.helpers import run_cli

    out = tmp_path / "ds"
    out.mkdir()
    (out / LOCK_NAME).write_text("999999999\n")  # a killed build's, locked by no one
    build_dataset(out, SMALL_SPEC, progress=False)  # counts as empty
    assert not (out / LOCK_NAME).exists()
    (out / LOCK_NAME).write_text("999999999\n")
    assert verify_dataset(out).ok  # a dataset reads and verifies with it there
    assert run_cli("verify", out).returncode == 0
    assert len(open_dataset(out).read_all()) == SMALL_SPEC.num_sequences
    build_dataset(out, SMALL_SPEC, "parquet", overwrite=True, workers=2, progress=False)
    assert LOCK_NAME not in {p.name for p in out.iterdir()}


def test_overwrite_keeps_the_lock_its_build_holds(tmp_path):
    import os

    from seqdata.store.build import is_build_file, prepare_output
    from seqdata.store.lock import LOCK_NAME, build_lock

    out = tmp_path / "ds"
    build_dataset(out, SMALL_SPEC, progress=False)
    assert is_build_file(LOCK_NAME)
    with build_lock(out) as lock:
        inode = os.stat(lock).st_ino
        prepare_output(out, overwrite=True)
        assert [p.name for p in out.iterdir()] == [LOCK_NAME]
        assert os.stat(lock).st_ino == inode
    assert not list(out.iterdir())


def test_a_file_system_without_locks_builds_unlocked(tmp_path, monkeypatch):
    import errno
    import os

    import seqdata.store.lock

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(seqdata.store.lock.fcntl, "flock", no_locks)
    build_dataset(tmp_path / "ds", SMALL_SPEC, progress=False)
    monkeypatch.undo()
    build_dataset(tmp_path / "locked", SMALL_SPEC, progress=False)
    assert snapshot(tmp_path / "ds") == snapshot(tmp_path / "locked")  # no lock file left


def test_a_lock_file_removed_while_it_is_taken_is_not_trusted(tmp_path, monkeypatch):
    import seqdata.store.lock as lock

    real, calls = lock._lock, []

    def removed_meanwhile(out, fd):
        calls.append(fd)
        if len(calls) == 1:  # as a build that has just finished and unlocked does
            (out / lock.LOCK_NAME).unlink()
        return real(out, fd)

    monkeypatch.setattr(lock, "_lock", removed_meanwhile)
    fd = lock.acquire(tmp_path)
    try:
        assert len(calls) == 2 and lock._same_file(fd, tmp_path / lock.LOCK_NAME)
    finally:
        lock.release(tmp_path, fd)
    assert not (tmp_path / lock.LOCK_NAME).exists()
