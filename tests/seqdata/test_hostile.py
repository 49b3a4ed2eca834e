"""Shards and manifests made by someone hostile: hashes are recomputed (`reseal`), so only
the content is hostile. Every case ends in one clear error naming the thing: no read
outside the dataset directory, no hang, no allocation beyond what the manifest says."""

from __future__ import annotations

import json
import os
import shutil
import threading

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from seqdata import (
    BatchConfig,
    LagSumSpec,
    ManifestError,
    OutputError,
    ShardError,
    SpecError,
    UniformLengths,
    build_dataset,
    open_dataset,
    verify_dataset,
)
from seqdata.buckets import MAX_DP_POINTS, auto_boundaries
from seqdata.store.manifest import checksum
from tests.helpers import reseal, rewrite_parquet, run_cli, snapshot


def copy_of(datasets, fmt, tmp_path):
    path = tmp_path / fmt
    shutil.copytree(datasets[fmt], path)
    return path


def first_shard(path, suffix=".h5"):
    return sorted(path.glob(f"data/shard-*{suffix}"))[0]


def last_group(f):
    return f[sorted(f)[-1]]


def one_epoch(path):
    return list(open_dataset(path).batches(BatchConfig(batch_size=16)))


def refused(path, *needles):
    """Reading and verifying both refuse ``path``'s first shard, naming it."""
    with pytest.raises(ShardError) as info:
        one_epoch(path)
    message = str(info.value)
    assert "\n" not in message and first_shard(path, "").name in message
    for needle in needles:
        assert needle in message, message
    report = verify_dataset(path)
    assert not report.ok and report.bad_shards[0].startswith("data/shard-00000")
    return message


# -- HDF5 shards that would read other files --------------------------------------------

def replace_dataset(shard, field, make):
    with h5py.File(shard, "r+") as f:
        group = last_group(f)
        old = group[field]
        shape, dtype = old.shape, old.dtype
        del group[field]
        make(group, field, shape, dtype)


def test_external_storage_pointing_outside_is_refused(datasets, tmp_path):
    path = copy_of(datasets, "hdf5", tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"a system file's bytes " * 1000)
    shard = first_shard(path)
    replace_dataset(shard, "y", lambda g, name, shape, dtype: g.create_dataset(
        name, shape, dtype, external=[(str(secret), 0, h5py.h5f.UNLIMITED)]))
    reseal(path, shard)
    refused(path, "external files", "would read other files")


def test_external_storage_on_a_fifo_does_not_hang(datasets, tmp_path):
    path = copy_of(datasets, "hdf5", tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    shard = first_shard(path)
    replace_dataset(shard, "x", lambda g, name, shape, dtype: g.create_dataset(
        name, shape, dtype, external=[(str(fifo), 0, h5py.h5f.UNLIMITED)]))
    reseal(path, shard)
    done = []
    worker = threading.Thread(target=lambda: done.append(refused(path, "external")),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert done, "reading a shard with external storage on a FIFO hung"


def test_a_virtual_dataset_is_refused(datasets, tmp_path):
    path = copy_of(datasets, "hdf5", tmp_path)
    source = tmp_path / "source.h5"
    shard = first_shard(path)

    def virtual(group, name, shape, dtype):
        with h5py.File(source, "w") as s:
            s.create_dataset("data", data=np.random.default_rng(0).random(shape).astype(dtype))
        layout = h5py.VirtualLayout(shape, dtype)
        layout[...] = h5py.VirtualSource(str(source), "data", shape)
        group.create_virtual_dataset(name, layout)

    replace_dataset(shard, "x", virtual)
    reseal(path, shard)
    refused(path, "a virtual dataset")


@pytest.mark.parametrize("kind", ["external", "soft"])
def test_links_are_refused(datasets, tmp_path, kind):
    path = copy_of(datasets, "hdf5", tmp_path)
    other = tmp_path / "other.h5"
    shard = first_shard(path)
    with h5py.File(shard, "r+") as f:
        name = sorted(f)[-1]
        if kind == "external":
            with h5py.File(other, "w") as o:
                f.copy(f[name], o, name)
            del f[name]
            f[name] = h5py.ExternalLink(str(other), name)
        else:
            f.move(name, "elsewhere")
            f[name] = h5py.SoftLink("/elsewhere")
    reseal(path, shard)
    refused(path, "link" if kind == "external" else "elsewhere")


def test_a_chunked_never_written_dataset_cannot_make_a_reader_allocate(datasets, tmp_path):
    path = copy_of(datasets, "hdf5", tmp_path)
    shard = first_shard(path)
    # 5 KB on disk; read, it would be 2**31 x 5 float32 of fill values: 40 GB.
    replace_dataset(shard, "x", lambda g, name, shape, dtype: g.create_dataset(
        name, (2**31, shape[1]), dtype, chunks=(1024, shape[1])))
    reseal(path, shard)
    assert shard.stat().st_size < 1_000_000
    refused(path, "has shape (2147483648, 5)", "make it")


# -- Parquet shards -------------------------------------------------------------------

def test_a_compressed_parquet_shard_is_refused_before_decoding(datasets, tmp_path):
    path = copy_of(datasets, "parquet", tmp_path)
    shard = first_shard(path, ".parquet")
    rewrite_parquet(shard, compression="zstd", use_dictionary=False)
    reseal(path, shard)
    refused(path, "stored ZSTD", "uncompressed and plain")


def test_a_permuted_parquet_length_column_is_refused(datasets, tmp_path):
    path = copy_of(datasets, "parquet", tmp_path)
    shard = first_shard(path, ".parquet")
    table = pq.read_table(shard)
    pf = pq.ParquetFile(shard)
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    lengths = table.column("length").to_numpy().copy()
    first = sizes[0]
    lengths[:first] = lengths[:first][::-1]  # still the bucket's lengths, wrong rows
    assert not np.array_equal(lengths, table.column("length").to_numpy())
    table = table.set_column(1, table.schema.field("length"), [lengths])
    with pq.ParquetWriter(shard, table.schema, compression="none",
                          use_dictionary=False) as writer:
        start = 0
        for n in sizes:
            writer.write_table(table.slice(start, n), row_group_size=n)
            start += n
    reseal(path, shard)
    refused(path, "stored lengths or ids disagree with the sequences")


# -- Content a reader must not accept ---------------------------------------------------

def edit_bucket(path, edit):
    shard = first_shard(path)
    with h5py.File(shard, "r+") as f:
        edit(last_group(f))
    reseal(path, shard)


def set_labels(group):
    y = group["y"][()]
    y[0] = 7
    group["y"][...] = y


def put_nan(group):
    x = group["x"][()]
    x[3, 1] = np.nan
    group["x"][...] = x


def put_out_of_range(group):
    x = group["x"][()]
    x[0, 0] = 5.0
    group["x"][...] = x


def zero_length(group):
    offsets = group["offsets"][()]
    offsets[1] = offsets[0]  # the first sequence now has length 0, the second is longer
    group["offsets"][...] = offsets


def duplicate_id(group):
    ids = group["ids"][()]
    ids[1] = ids[0]
    group["ids"][...] = ids


@pytest.mark.parametrize(("edit", "needle"), [
    (set_labels, "labels other than 0 and 1"),
    (put_nan, "not finite"),
    (put_out_of_range, "outside the spec's range"),
    (zero_length, "lengths"),
    (duplicate_id, "each once"),
])
def test_content_checked_on_first_read_and_by_plain_verify(datasets, tmp_path, edit, needle):
    path = copy_of(datasets, "hdf5", tmp_path)
    edit_bucket(path, edit)
    refused(path, needle)
    assert needle in " ".join(p.message for p in verify_dataset(path).problems)


def test_trainer_stops_on_bad_labels_with_one_line(datasets, tmp_path):
    path = copy_of(datasets, "hdf5", tmp_path)
    edit_bucket(path, set_labels)
    done = run_cli("train", "--data", path, "--out", tmp_path / "run", "--epochs", "1",
                   "--steps-per-epoch", "2", "--batch-size", "16", "--quiet", module="trainer")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "shard-00000.h5" in lines[0] and "labels other than" in lines[0]
    assert "Traceback" not in done.stderr


# -- No silent change --------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_a_dataset_regenerated_under_a_reader_is_an_error(tmp_path, fmt):
    spec = LagSumSpec(num_sequences=200, seed=3, chunk_size=64)
    build_dataset(tmp_path / "d", spec, fmt, progress=False)
    ds = open_dataset(tmp_path / "d")
    config = BatchConfig(batch_size=16)
    assert sum(len(b) for b in ds.batches(config)) == 200
    build_dataset(tmp_path / "d", LagSumSpec(num_sequences=200, seed=3, chunk_size=64,
                                             threshold=1.0), fmt, overwrite=True,
                  progress=False)
    with pytest.raises(ShardError, match=r"shard-0000.*damaged"):
        list(ds.batches(config))


def test_a_touched_but_unchanged_shard_is_read_again(datasets, tmp_path):
    path = copy_of(datasets, "hdf5", tmp_path)
    ds = open_dataset(path)
    first = [b.ids.tolist() for b in ds.batches(BatchConfig(batch_size=16))]
    shard = first_shard(path)
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    assert [b.ids.tolist() for b in ds.batches(BatchConfig(batch_size=16))] == first


# -- Manifests --------------------------------------------------------------------------

def edit_manifest(path, edit):
    doc = json.loads((path / "manifest.json").read_text())
    edit(doc)
    doc["checksum"] = checksum(doc)
    (path / "manifest.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(("name", "edit", "needle"), [
    ("NUL in a path", lambda d: d["shards"][0].update(path="data/shard-0\x000000.h5"),
     "must be names of letters"),
    ("a lone surrogate", lambda d: d["shards"][0].update(path="data/shard-\udc80.h5"),
     "must be names of letters"),
    ("the same shard twice", lambda d: d["shards"][1].update(path="data/./shard-00000.h5"),
     "must be names of letters"),
    ("a shard outside data/", lambda d: d["shards"][1].update(path="shard-00000.h5"),
     "must name a file in data/"),
])
def test_hostile_shard_paths(datasets, tmp_path, name, edit, needle):
    path = copy_of(datasets, "hdf5", tmp_path)
    text = json.dumps  # lone surrogates need ensure_ascii (the default)
    doc = json.loads((path / "manifest.json").read_text())
    edit(doc)
    doc["checksum"] = checksum(doc)
    (path / "manifest.json").write_text(text(doc))
    with pytest.raises(ManifestError, match=needle):
        open_dataset(path)


def test_the_same_file_under_two_names_is_refused(datasets, tmp_path):
    path = copy_of(datasets, "hdf5", tmp_path)
    (path / "data" / "alias.h5").symlink_to("shard-00000.h5")
    edit_manifest(path, lambda d: d["shards"][1].update(path="data/alias.h5"))
    with pytest.raises(ManifestError, match="the same file twice"):
        open_dataset(path)


def test_deep_nesting_and_huge_numbers_are_one_line(datasets, tmp_path):
    path = copy_of(datasets, "hdf5", tmp_path)
    (path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError, match="not a manifest"):
        open_dataset(path)
    (path / "manifest.json").write_text('{"manifest_version": 1' + "0" * 5000 + "}")
    with pytest.raises(ManifestError, match="not a manifest"):
        open_dataset(path)


@pytest.mark.parametrize("kind", ["zero device", "fifo", "huge"])
def test_a_manifest_that_is_not_a_small_regular_file(datasets, tmp_path, kind):
    path = copy_of(datasets, "hdf5", tmp_path)
    manifest = path / "manifest.json"
    manifest.unlink()
    if kind == "zero device":
        manifest.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(manifest)
    else:
        with open(manifest, "wb") as f:
            f.truncate(300 * 2**20)  # sparse: 300 MiB of nothing
    done = run_cli("verify", path, timeout=60)
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "manifest.json" in line
    assert {"zero device": "a device", "fifo": "a FIFO", "huge": "more than"}[kind] in line


# -- Options and manifests that would need too much memory ------------------------------

@pytest.mark.parametrize("args", [
    ["--min-length", "1", "--max-length", "40000"],
    ["--num-sequences", "1", "--chunk-size", "16777216"],
    ["--max-length", "1000000"],
])
def test_options_that_would_need_too_much_memory_are_refused(tmp_path, args):
    done = run_cli("generate", tmp_path / "out", *args, timeout=60)
    assert done.returncode == 2
    assert "GiB per generation chunk, more than the 2 GiB limit; lower chunk_size" in \
        done.stderr
    assert not (tmp_path / "out").exists()


def test_many_distinct_lengths_keep_bucketing_small():
    lengths = UniformLengths(1, 60_000)
    bounds = auto_boundaries(lengths.pmf(), 1)
    assert bounds[-1] == 60_000 and len(bounds) <= 64
    assert MAX_DP_POINTS <= 1024  # the dynamic programme's tables stay at 8 MiB each


def test_inspect_of_a_manifest_with_60000_lengths(tmp_path):
    spec = LagSumSpec(num_sequences=50, chunk_size=8, lengths=UniformLengths(1, 60_000))
    build_dataset(tmp_path / "d", spec, progress=False)
    done = run_cli("inspect", tmp_path / "d", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "60,000" in done.stdout or "60000" in done.stdout


def test_a_spec_over_the_chunk_limit_in_a_manifest_is_refused(datasets, tmp_path):
    path = copy_of(datasets, "hdf5", tmp_path)
    edit_manifest(path, lambda d: d["spec"].update(chunk_size=16_777_216))
    with pytest.raises(ManifestError, match="per generation chunk"):
        open_dataset(path)
    with pytest.raises(SpecError, match="per generation chunk"):
        LagSumSpec(chunk_size=16_777_216)


def test_a_build_the_disk_cannot_hold_is_refused_before_writing(tmp_path):
    done = run_cli("generate", tmp_path / "out", "--num-sequences", "1099511627776",
                   timeout=60)
    assert done.returncode == 2
    assert "1,099,511,627,776 sequences need about" in done.stderr and "GB are free" in \
        done.stderr
    assert not (tmp_path / "out").exists()


def test_existing_dataset_files_count_as_room(tmp_path, monkeypatch):
    import shutil as shutil_module

    from seqdata.store import build

    spec = LagSumSpec(num_sequences=300, seed=1, chunk_size=64)
    build_dataset(tmp_path / "d", spec, progress=False)
    present = sum(p.stat().st_size for p in (tmp_path / "d").rglob("*") if p.is_file())
    usage = shutil_module.disk_usage(tmp_path)
    # As much free space as the estimate needs beyond the files an overwrite replaces.
    free = spec.expected_bytes - present + 1
    monkeypatch.setattr(build.shutil, "disk_usage", lambda _: usage._replace(free=free))
    build_dataset(tmp_path / "d", spec, overwrite=True, progress=False)
    with pytest.raises(OutputError, match="sequences need about"):
        build_dataset(tmp_path / "other", spec, progress=False)
    assert not (tmp_path / "other").exists()


def test_journal_lines_of_the_wrong_shape_are_not_trusted(tmp_path):
    from seqdata.store.journal import JOURNAL_NAME

    spec = LagSumSpec(num_sequences=300, seed=2, chunk_size=64)
    build_dataset(tmp_path / "clean", spec, progress=False)
    out = tmp_path / "d"
    build_dataset(out, spec, progress=False)
    plan = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").unlink()
    plan_line = {"plan": {"spec": plan["spec"], "format": "hdf5",
                          "boundaries": plan["boundaries"]}}
    lines = [json.dumps(plan_line),
             json.dumps({"shard": {"path": "data/shard-00000.h5", "chunk": "zero", "size": [],
                                   "sha256": 5, "bucket_sequences": 1,
                                   "bucket_timesteps": None}, "length_counts": "x"}),
             json.dumps({"shard": {"path": "../../etc/passwd", "chunk": 1, "size": 10,
                                   "sha256": "0" * 64, "bucket_sequences": [1],
                                   "bucket_timesteps": [1]}, "length_counts": [1]}),
             json.dumps([1, 2, 3]), "9" * 5000, "[" * 100_000]
    (out / JOURNAL_NAME).write_text("\n".join(lines) + "\n")
    done = run_cli("generate", out, "--num-sequences", "300", "--seed", "2",
                   "--chunk-size", "64", "--resume", "--quiet", timeout=120)
    assert done.returncode == 0, done.stderr
    assert verify_dataset(out).ok
    assert snapshot(out) == snapshot(tmp_path / "clean")
