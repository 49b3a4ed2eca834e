"""The cache of datasets read from URLs: listed, pruned least recently used first, and a
version that a reader (a thread, a forked worker, another process) holds never removed.

Real file:// URLs, a real cache directory, real processes holding it."""

from __future__ import annotations

import errno
import fcntl
import gc
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from seqdata import LagSumSpec, build_dataset, open_dataset
from seqdata.errors import OutputError
from seqdata.store.cache import IN_USE_NAME, REMOVING, hold, prune, read_cache
from tests.helpers import ROOT, run_cli


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQDATA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def urls(tmp_path):
    """Two datasets at file:// URLs: HDF5 and Parquet, of different sizes."""
    out = []
    for fmt, n in (("hdf5", 600), ("parquet", 1200)):
        build_dataset(tmp_path / fmt, LagSumSpec(num_sequences=n, seed=3, chunk_size=128), fmt,
                      progress=False)
        out.append(f"file://{tmp_path / fmt}")
    return out


def read_all(url):
    """The dataset at ``url``, every shard fetched into the cache (one epoch)."""
    ds = open_dataset(url)
    ids = np.concatenate([b.ids for b in ds.batches("bucketed", batch_size=64)])
    return ds, ids


def files_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_the_cache_lists_each_version_with_its_url_shards_size_and_use(cache, urls):
    a, _ = read_all(urls[0])
    b, _ = read_all(urls[1])
    contents = read_cache()
    assert [v.url for v in contents.versions] == urls  # least recently used first
    for version, ds in zip(contents.versions, (a, b), strict=True):
        assert version.path == ds.root and version.in_use
        assert version.shards == len(ds.shards)
        assert version.size == files_size(ds.root)
    assert contents.size == files_size(cache) - sum(
        (d / "source-url").stat().st_size for d in cache.iterdir())
    del a
    gc.collect()
    assert [v.in_use for v in read_cache().versions] == [False, True]


def test_prune_removes_the_least_recently_used_versions_not_in_use(cache, urls):
    a, ids = read_all(urls[0])
    b, _ = read_all(urls[1])
    old = a.root
    os.utime(old / IN_USE_NAME, (1, 1))  # used long ago
    size_b = files_size(b.root)
    removed, _ = prune(size_b)
    assert removed == []  # both in use
    del a, b
    gc.collect()
    removed, _ = prune(size_b, dry_run=True)
    assert [v.path for v in removed] == [old] and old.exists()
    removed, _ = prune(size_b)
    assert [v.path for v in removed] == [old] and not old.exists()
    assert [v.url for v in read_cache().versions] == [urls[1]]
    again, ids_again = read_all(urls[0])  # fetched anew
    np.testing.assert_array_equal(ids_again, ids)
    assert again.root == old and len(list((old / "data").iterdir())) == len(again.shards)


def test_a_version_held_by_another_process_is_never_pruned(cache, urls):
    read_all(urls[0])
    gc.collect()
    code = ("import sys, seqdata\n"
            f"ds = seqdata.open_dataset({urls[0]!r})\n"
            "print('holding', flush=True)\n"
            "sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline() == "holding\n"
        removed, _ = prune(0)
        assert removed == [] and [v.in_use for v in read_cache().versions] == [True]
    finally:
        holder.communicate("")
    removed, _ = prune(0)
    assert [v.url for v in removed] == [urls[0]] and read_cache().versions == []


def test_a_forked_worker_keeps_its_parents_version_in_use(cache, urls):
    ds, _ = read_all(urls[0])
    context = multiprocessing.get_context("fork")
    done = context.Event()
    child = context.Process(target=done.wait, args=(60,))  # holds what it inherits
    child.start()
    try:
        del ds
        gc.collect()
        assert [v.in_use for v in read_cache().versions] == [True]
        assert prune(0)[0] == []
    finally:
        done.set()
        child.join(60)
    assert [v.in_use for v in read_cache().versions] == [False]


def test_prune_removes_leftovers_of_killed_downloads_and_prunes(cache, urls):
    ds, _ = read_all(urls[0])
    version = ds.root
    del ds
    gc.collect()
    leftover = version / "shard-00000.12345.tmp.h5"
    leftover.write_bytes(b"half a download")
    renamed = version.parent / f"{REMOVING}0123456789abcdef-1-2"
    (renamed / "data").mkdir(parents=True)
    removed, _ = prune(10**12)
    assert removed == [] and not leftover.exists() and not renamed.exists()
    assert (version / "manifest.json").exists()


def test_prune_refuses_a_negative_size_and_a_missing_cache(tmp_path):
    with pytest.raises(ValueError, match="max_size must be >= 0"):
        prune(-1, tmp_path)
    with pytest.raises(OutputError, match="no seqdata cache there"):
        read_cache(tmp_path / "nowhere")


def test_the_cache_command_lists_and_prunes(cache, urls):
    a, _ = read_all(urls[0])
    root = a.root
    del a
    gc.collect()
    listed = run_cli("cache", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert urls[0] in lines[0] and "1 dataset version," in lines[-1]
    dry = run_cli("cache", "prune", "--max-size", "0", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would remove") and root.exists()
    done = run_cli("cache", "prune", "--cache", cache, "--max-size", "0")
    assert done.returncode == 0 and done.stdout.startswith("removed") and not root.exists()
    for args, needle in ((("prune", "--max-size", "10Q"), "expected a size such as 500M"),
                         (("list", "--cache", cache / "nowhere"), "no seqdata cache there")):
        bad = run_cli("cache", *args)
        assert bad.returncode == 2 and needle in bad.stderr, bad.stderr
        assert bad.stderr.count("\n") == 1


def test_a_reader_opening_a_version_a_prune_renames_away_makes_it_anew(tmp_path):
    """`hold` waits while a prune holds the version; finding it renamed away, it makes the
    version again and holds that one."""
    version = tmp_path / "0123456789abcdef" / "fedcba9876543210"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text("{}")
    pruning = os.open(version / IN_USE_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(pruning, fcntl.LOCK_EX)
    got = []
    reader = threading.Thread(target=lambda: got.append(hold(version)))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive()  # waiting for the prune
    version.rename(version.parent / f"{REMOVING}{version.name}")
    os.close(pruning)
    reader.join(10)
    assert not reader.is_alive() and got[0] is not None
    held = os.fstat(got[0])
    now = (version / IN_USE_NAME).stat()
    assert (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
    assert not (version / "manifest.json").exists()  # a fresh version, fetched anew
    os.close(got[0])


def test_without_locks_reading_works_and_prune_removes_nothing(cache, urls, monkeypatch):
    """On a file system without locks (flock: ENOLCK), a URL still reads; prune cannot
    tell what is in use, so it takes every version to be and removes none."""
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ds, ids = read_all(urls[0])
    assert len(ids) == ds.num_sequences
    del ds
    gc.collect()
    assert prune(0)[0] == [] and [v.in_use for v in read_cache().versions] == [True]


def test_another_users_cache_is_held_read_only(cache, urls, monkeypatch):
    """A use file that this user may not write (another user's cache): opened read-only,
    the version is still held; one that cannot be opened at all leaves it unmarked."""
    ds, _ = read_all(urls[0])
    version = ds.root
    del ds
    gc.collect()
    real_open = os.open

    def refuse_writes(path, flags, *args, **kwargs):
        if str(path).endswith(IN_USE_NAME) and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_writes)
    fd = hold(version)
    assert fd is not None and [v.in_use for v in read_cache().versions] == [True]
    os.close(fd)
    (version / IN_USE_NAME).unlink()  # and now it cannot be made either
    assert hold(version) is None


def test_prune_removes_a_killed_verifys_scratch_but_not_a_running_ones(cache, urls):
    """`verify URL` downloads into a scratch directory of the URL's cache directory,
    held while it runs: a running verify's is kept, a killed one's removed."""
    from seqdata.store.remote import open_remote

    shards = open_remote(urls[0])
    copies = shards.fresh_copies()
    _, scratch, problem = next(copies)  # a verify at its first shard
    assert problem is None and scratch.name.startswith("verify-")
    killed = scratch.parent / "verify-killed"
    (killed / "data").mkdir(parents=True)
    prune(10**12)
    assert scratch.is_dir() and not killed.exists()
    copies.close()  # the verify ends: its scratch goes with it
    assert not scratch.exists()
