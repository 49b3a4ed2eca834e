"""Datasets at fsspec URLs: memory:// and file:// round trips, lazy fetching with
read-ahead, damage, failed uploads resumed, convert both ways, and the CLI.

No network and no mocks of fsspec: the stores are fsspec's own, and the failing store
is a real `MemoryFileSystem` subclass registered under a protocol of its own.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import pickle
import posixpath
import subprocess
import sys
import threading
from pathlib import Path

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from seqdata import (
    LagSumSpec,
    ManifestError,
    OutputError,
    RemoteError,
    ShardError,
    build_dataset,
    open_dataset,
    verify_dataset,
)
from seqdata.store.convert import convert_dataset
from seqdata.store.remote import staging_dir
from tests.helpers import ROOT, SMALL_SPEC, run_cli, snapshot

PROTOCOL = "seqdatatest"


class StoreForTests(MemoryFileSystem):
    """A memory store of its own that records every download (shard name, thread) and
    fails the upload of one file when asked to."""

    protocol = PROTOCOL
    store: dict = {}  # noqa: RUF012 (fsspec's own layout: one store per class)
    pseudo_dirs: list = [""]  # noqa: RUF012
    fetches: list[tuple[str, str]] = []  # noqa: RUF012
    fail_upload_of: str | None = None  # a file name's stem

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, str):
            path = path.removeprefix(f"{PROTOCOL}://")
        return super()._strip_protocol(path)

    def get_file(self, rpath, lpath, *args, **kwargs):
        type(self).fetches.append((posixpath.basename(rpath), threading.current_thread().name))
        return super().get_file(rpath, lpath, *args, **kwargs)

    def put_file(self, lpath, rpath, *args, **kwargs):
        stem = type(self).fail_upload_of
        if stem is not None and posixpath.basename(rpath).startswith(stem):
            raise OSError(errno.EIO, "injected upload failure", rpath)
        return super().put_file(lpath, rpath, *args, **kwargs)


fsspec.register_implementation(PROTOCOL, StoreForTests, clobber=True)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test's cache (and staging) directory, and empty memory stores."""
    monkeypatch.setenv("SEQDATA_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "cache"
    for fs_class in (MemoryFileSystem, StoreForTests):
        fs_class.store.clear()
        fs_class.pseudo_dirs[:] = [""]
    StoreForTests.fetches.clear()
    StoreForTests.fail_upload_of = None


def url_files(url: str) -> dict[str, bytes]:
    """Every file at ``url`` with its bytes (as `snapshot` gives a directory's)."""
    fs, root = fsspec.core.url_to_fs(url)
    return {f[len(root) + 1:]: fs.cat_file(f) for f in sorted(fs.find(root))}


def cached_shards(ds) -> list[str]:
    return sorted(p.name for p in (ds.root / "data").glob("shard-*"))


def same_batches(a, b) -> bool:
    pairs = list(zip(a, b, strict=True))
    return bool(pairs) and all(
        all(np.array_equal(getattr(x, f), getattr(y, f))
            for f in ("x", "y", "mask", "lengths", "ids")) for x, y in pairs)


@pytest.mark.parametrize("scheme", ["memory", "file"])
@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_a_url_build_equals_a_local_build_byte_for_byte(tmp_path, scheme, fmt):
    build_dataset(tmp_path / "local", SMALL_SPEC, fmt, num_buckets=4, progress=False)
    url = f"memory://{tmp_path.name}/ds" if scheme == "memory" else (tmp_path / "url").as_uri()
    manifest = build_dataset(url, SMALL_SPEC, fmt, num_buckets=4, workers=2, progress=False)
    local = snapshot(tmp_path / "local")
    assert set(local) == {"manifest.json", "README.md", *(s.path for s in manifest.shards)}
    assert url_files(url) == local
    assert not staging_dir(url).exists()  # removed once uploaded


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_batches_from_a_url_equal_batches_read_locally(tmp_path, fmt):
    spec = LagSumSpec(num_sequences=400, seed=5, chunk_size=50, num_features=3, window=2)
    build_dataset(tmp_path / "local", spec, fmt, progress=False)
    url = f"memory://{tmp_path.name}/ds"
    build_dataset(url, spec, fmt, progress=False)
    local, remote = open_dataset(tmp_path / "local"), open_dataset(url, fetch_ahead=2)
    configs = [dict(mode="bucketed", batch_size=16),
               dict(mode="padded", batch_size=7, seed=3, epoch=1),
               dict(mode="bucketed", max_timesteps=900, window_shards=3, read_ahead=False),
               dict(mode="bucketed", batch_size=8, static_shapes=True, shuffle=False),
               dict(mode="padded", batch_size=12, rank=1, num_ranks=2)]
    for cfg in configs:
        mode = cfg.pop("mode")
        assert same_batches(remote.batches(mode, **cfg), local.batches(mode, **cfg)), cfg
    share = dict(batch_size=10, seed=1)  # a loader worker's share: span reads
    assert same_batches(remote.batches("bucketed", select=lambda k: k % 3 == 1, **share),
                        local.batches("bucketed", select=lambda k: k % 3 == 1, **share))
    assert remote.location == url and repr(remote).startswith(f"Dataset({url!r}")
    assert cached_shards(remote) == sorted(Path(s.path).name for s in remote.shards)


def test_reading_fetches_only_what_it_needs_and_the_next_shards_ahead(tmp_path):
    spec = LagSumSpec(num_sequences=120, seed=2, chunk_size=10)
    url = f"{PROTOCOL}://{tmp_path.name}/ds"
    build_dataset(url, spec, boundaries=(12, 50, 99), progress=False)
    ds = open_dataset(url, fetch_ahead=3)
    assert StoreForTests.fetches == [] and cached_shards(ds) == []  # manifest and card only

    ds.read_shard(4, [1])
    assert cached_shards(ds) == ["shard-00004.h5"]
    assert StoreForTests.fetches == [("shard-00004.h5", threading.current_thread().name)]
    ds.read_shard(4)
    assert len(StoreForTests.fetches) == 1  # cached: not fetched again

    holding = [i for i, s in enumerate(ds.shards) if s.bucket_sequences[0]]
    assert 0 < len(holding) < len(ds.shards) - 1  # lengths 10..12: some shards lack them
    ds.read_bucket(0)
    assert cached_shards(ds) == sorted({f"shard-{i:05d}.h5" for i in [4, *holding]})

    StoreForTests.fetches.clear()
    fresh = open_dataset(url, cache=tmp_path / "other", fetch_ahead=3)
    batches = list(fresh.batches("bucketed", batch_size=8, seed=9))
    assert sum(len(b.ids) for b in batches) == spec.num_sequences
    names = [name for name, _ in StoreForTests.fetches]
    assert sorted(names) == sorted(Path(s.path).name for s in fresh.shards)  # each once
    # The reader waited for fetches started ahead of it, on the fetch threads.
    assert {thread.split("_")[0] for _, thread in StoreForTests.fetches} == {"seqdata-fetch"}

    StoreForTests.fetches.clear()
    again = open_dataset(url, cache=tmp_path / "other")
    assert same_batches(again.batches("bucketed", batch_size=8, seed=9), batches)
    assert StoreForTests.fetches == []  # every shard was in the cache


def test_a_changed_dataset_at_the_same_url_is_never_read_from_stale_shards(tmp_path):
    url = f"memory://{tmp_path.name}/ds"
    build_dataset(url, SMALL_SPEC, progress=False)
    first = open_dataset(url)
    first.read_all()
    other = LagSumSpec(num_sequences=300, seed=8, chunk_size=64)  # same sizes, new bytes
    build_dataset(url, other, overwrite=True, progress=False)
    build_dataset(tmp_path / "local", other, progress=False)
    second = open_dataset(url)
    assert second.root != first.root
    assert np.array_equal(second.read_all().x, open_dataset(tmp_path / "local").read_all().x)
    assert not np.array_equal(second.read_all().x, first.read_all().x)


def damage(url: str, rel: str) -> None:
    fs, root = fsspec.core.url_to_fs(url)
    data = bytearray(fs.cat_file(f"{root}/{rel}"))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(f"{root}/{rel}", bytes(data))


def test_a_damaged_remote_shard_is_caught_by_verify_and_by_reading(tmp_path):
    url = f"memory://{tmp_path.name}/ds"
    build_dataset(url, SMALL_SPEC, progress=False)
    assert verify_dataset(url, labels=True).ok
    damage(url, "data/shard-00002.h5")

    report = verify_dataset(url)
    assert report.root == url and report.bad_shards == ["data/shard-00002.h5"]
    assert "sha256 is" in report.problems[0].message

    ds = open_dataset(url)
    with pytest.raises(ShardError) as info:
        ds.read_shard(2)
    message = str(info.value)
    assert message == (f"shard {url}/data/shard-00002.h5 is damaged: its SHA-256 does not "
                       f"match the manifest")
    assert "shard-00002" not in cached_shards(ds)  # nothing unchecked enters the cache
    with pytest.raises(ShardError, match=r"shard-00002\.h5 is damaged"):
        list(ds.batches("bucketed", batch_size=8))


def test_verify_does_not_trust_the_cache(tmp_path):
    url = f"memory://{tmp_path.name}/ds"
    build_dataset(url, SMALL_SPEC, progress=False)
    open_dataset(url).read_all()  # every shard cached, checked
    damage(url, "data/shard-00001.h5")
    assert verify_dataset(url).bad_shards == ["data/shard-00001.h5"]


def test_a_missing_remote_shard_is_named_by_its_url(tmp_path):
    url = f"memory://{tmp_path.name}/ds"
    build_dataset(url, SMALL_SPEC, progress=False)
    fs, root = fsspec.core.url_to_fs(url)
    fs.rm_file(f"{root}/data/shard-00003.h5")
    with pytest.raises(ShardError, match=f"shard {url}/data/shard-00003.h5 listed in the "
                                         f"manifest is missing"):
        open_dataset(url)
    report = verify_dataset(url)
    assert [(p.shard, p.message) for p in report.problems] == [
        ("data/shard-00003.h5", "missing")]


def test_an_upload_that_fails_leaves_no_manifest_and_resume_completes_it(tmp_path):
    build_dataset(tmp_path / "local", SMALL_SPEC, progress=False)
    url = f"{PROTOCOL}://{tmp_path.name}/ds"
    StoreForTests.fail_upload_of = "shard-00003"
    with pytest.raises(OutputError, match=f"cannot upload .* to {url}/data/shard-00003.h5: "
                                          f".*injected upload failure"):
        build_dataset(url, SMALL_SPEC, progress=False)
    left = url_files(url)
    assert "manifest.json" not in left and "README.md" not in left
    assert "data/shard-00003.h5" not in left
    assert [f for f in left if ".tmp" in f] == []
    assert (staging_dir(url) / "manifest.json").exists()  # the built dataset, kept

    with pytest.raises(ManifestError, match="not a finished seqdata dataset"):
        open_dataset(url)
    with pytest.raises(OutputError, match=r"unfinished dataset .* pass resume=True"):
        build_dataset(url, SMALL_SPEC, progress=False)
    StoreForTests.fail_upload_of = None
    build_dataset(url, SMALL_SPEC, resume=True, progress=False)
    assert url_files(url) == snapshot(tmp_path / "local")
    assert not staging_dir(url).exists()
    # Resuming a finished dataset of the same plan changes nothing; of another, refused.
    assert build_dataset(url, SMALL_SPEC, resume=True, progress=False).num_sequences == 300
    with pytest.raises(OutputError, match="another spec, format or boundaries"):
        build_dataset(url, SMALL_SPEC, num_buckets=2, resume=True, progress=False)


def test_the_overwrite_rules_hold_at_a_url(tmp_path):
    url = f"memory://{tmp_path.name}/ds"
    build_dataset(url, SMALL_SPEC, progress=False)
    with pytest.raises(OutputError, match=f"output directory {url} is not empty .* "
                                          f"overwrite=True"):
        build_dataset(url, SMALL_SPEC, progress=False)
    smaller = LagSumSpec(num_sequences=100, seed=7, chunk_size=64)
    build_dataset(url, smaller, overwrite=True, progress=False)
    build_dataset(tmp_path / "local", smaller, progress=False)
    assert url_files(url) == snapshot(tmp_path / "local")  # old shards 2..4 removed

    fs, root = fsspec.core.url_to_fs(url)
    fs.pipe_file(f"{root}/notes.txt", b"mine")
    with pytest.raises(OutputError, match=r"not part of a seqdata dataset \(notes\.txt\)"):
        build_dataset(url, smaller, overwrite=True, progress=False)
    fs.rm_file(f"{root}/notes.txt")
    fs.pipe_file(f"{root}/README.md", b"# my own readme\n")
    with pytest.raises(OutputError, match=r"README\.md"):
        build_dataset(url, smaller, overwrite=True, progress=False)


def test_convert_to_a_url_and_back(tmp_path):
    build_dataset(tmp_path / "h5", SMALL_SPEC, "hdf5", progress=False)
    build_dataset(tmp_path / "pq", SMALL_SPEC, "parquet", num_buckets=3, progress=False)
    url = f"memory://{tmp_path.name}/pq"
    convert_dataset(tmp_path / "h5", url, "parquet", num_buckets=3, progress=False)
    assert url_files(url) == snapshot(tmp_path / "pq")
    convert_dataset(url, tmp_path / "back", "hdf5", boundaries=open_dataset(
        tmp_path / "h5").boundaries, progress=False)
    assert snapshot(tmp_path / "back") == snapshot(tmp_path / "h5")

    there = (tmp_path / "h5").as_uri()
    with pytest.raises(OutputError, match="lies inside the source dataset"):
        convert_dataset(there, tmp_path / "h5" / "inner", progress=False)
    with pytest.raises(OutputError, match="is the source dataset"):
        convert_dataset(tmp_path / "h5", there, progress=False)


def read_in_child(dataset, queue) -> None:
    queue.put(int(sum(b.ids.sum() for b in dataset.batches("bucketed", batch_size=8))))


def test_forked_and_pickled_readers_fetch_in_their_own_process(tmp_path):
    url = (tmp_path / "url").as_uri()  # file://: visible from other processes
    build_dataset(url, SMALL_SPEC, progress=False)
    ds = open_dataset(url)
    ds.read_shard(0)  # the parent's fetch threads have run
    want = sum(range(SMALL_SPEC.num_sequences))
    for method in ("fork", "spawn"):
        context = multiprocessing.get_context(method)
        queue = context.Queue()
        children = [context.Process(target=read_in_child, args=(ds, queue)) for _ in range(2)]
        for child in children:
            child.start()
        assert [queue.get(timeout=120) for _ in children] == [want, want]
        for child in children:
            child.join(60)
            assert child.exitcode == 0
    assert pickle.loads(pickle.dumps(ds)).location == url


def test_the_cli_on_file_urls(tmp_path):
    url = (tmp_path / "ds").as_uri()
    gen = run_cli("generate", url, "--num-sequences", "300", "--seed", "7", "--chunk-size",
                  "64", "--quiet")
    assert gen.returncode == 0, gen.stderr
    assert f"to {url}" in gen.stdout
    build_dataset(tmp_path / "local", SMALL_SPEC, progress=False)
    assert snapshot(tmp_path / "ds") == snapshot(tmp_path / "local")

    ins = run_cli("inspect", url)
    assert ins.returncode == 0, ins.stderr
    assert f"dataset    {url} (hdf5, 5 shards" in ins.stdout
    assert f"card       {url}/README.md" in ins.stdout
    assert json.loads(run_cli("inspect", url, "--json").stdout)["path"] == url

    ver = run_cli("verify", url, "--labels", "--quiet")
    assert ver.returncode == 0 and f"{url}: OK (5 shards" in ver.stdout, ver.stderr

    dst = (tmp_path / "pq").as_uri()
    con = run_cli("convert", url, dst, "--format", "parquet", "--quiet")
    assert con.returncode == 0, con.stderr
    assert open_dataset(dst).format == "parquet"
    again = run_cli("generate", url, "--num-sequences", "300", "--quiet")
    assert again.returncode == 2 and "--overwrite" in again.stderr

    damage(url, "data/shard-00001.h5")
    bad = run_cli("verify", url, "--quiet")
    assert bad.returncode == 1
    assert f"BAD {url}/data/shard-00001.h5: sha256 is" in bad.stdout


def one_line_error(result, *fragments) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_bad_urls_are_one_line_errors(tmp_path):
    one_line_error(run_cli("inspect", "nosuchproto://bucket/ds"), "nosuchproto://bucket/ds",
                   "fsspec knows no protocol 'nosuchproto'", "s3fs for s3://")
    one_line_error(run_cli("generate", "nosuchproto://bucket/ds", "--quiet"),
                   "nosuchproto://bucket/ds")
    missing = (tmp_path / "nothing").as_uri()
    for command in ("inspect", "verify"):
        one_line_error(run_cli(command, missing), f"{missing}/manifest.json not found")
    one_line_error(run_cli("convert", missing, (tmp_path / "out").as_uri()), missing)
    with pytest.raises(RemoteError, match="s3fs"):
        open_dataset("s3://bucket/ds")


def test_a_url_without_fsspec_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['fsspec'] = None\n"
            "import seqdata\n"
            "try:\n"
            "    seqdata.open_dataset('memory://ds')\n"
            "except seqdata.RemoteError as e:\n"
            "    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == ("memory://ds is a URL, and URLs need fsspec: pip install "
                                   "'seqdata[remote]'")


def test_importing_seqdata_does_not_import_fsspec():
    code = "import sys, seqdata, seqdata.cli; print('fsspec' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"
