"""`seqdata convert`: the same sequences in another format, bucketing or layout, written
through the build's own shard writer (a converted dataset is a fresh build, byte for byte)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqdata import OutputError, ShardError, build_dataset, open_dataset, verify_dataset
from seqdata.store.convert import convert_dataset
from seqdata.store.manifest import checksum
from tests.helpers import SMALL_SPEC, run_cli, snapshot


def as_old_layout(path: Path) -> None:
    """Turn a dataset directory into what seqdata wrote before manifest_version 2: the
    shards beside the manifest, no card, no data/ (the manifest otherwise the same)."""
    doc = json.loads((path / "manifest.json").read_text())
    for shard in doc["shards"]:
        name = shard["path"].removeprefix("data/")
        (path / shard["path"]).rename(path / name)
        shard["path"] = name
    (path / "data").rmdir()
    (path / "README.md").unlink()
    doc["manifest_version"] = 1
    doc["checksum"] = checksum(doc)
    (path / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n")


def by_id(path: Path):
    """(ids, x, y) of every sequence of a dataset, in id order."""
    flat = open_dataset(path).read_all()
    order = np.argsort(flat.ids)
    seqs = flat.take(order)
    return seqs.ids, seqs.x, seqs.y, seqs.offsets


def assert_same_sequences(a: Path, b: Path) -> None:
    for left, right in zip(by_id(a), by_id(b), strict=True):
        np.testing.assert_array_equal(left, right)


@pytest.mark.parametrize(("src", "fmt"), [("hdf5", "parquet"), ("parquet", "hdf5")])
def test_a_converted_dataset_is_the_fresh_build_byte_for_byte(datasets, tmp_path, src, fmt):
    out = tmp_path / "out"
    manifest = convert_dataset(datasets[src], out, fmt, progress=False)
    assert manifest.format == fmt and manifest.version == 2
    assert snapshot(out) == snapshot(datasets[fmt])  # shards, card and manifest
    assert verify_dataset(out, labels=True).ok
    assert_same_sequences(out, datasets[src])


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
@pytest.mark.parametrize("bucketing", [{"num_buckets": 2}, {"boundaries": (30, 60, 80, 99)},
                                       {"num_buckets": 11}])
def test_rebucketing_keeps_every_sequence(datasets, tmp_path, fmt, bucketing):
    out = tmp_path / "out"
    manifest = convert_dataset(datasets["hdf5"], out, fmt, progress=False, **bucketing)
    assert verify_dataset(out, labels=True).ok
    assert_same_sequences(out, datasets["hdf5"])
    fresh = build_dataset(tmp_path / "fresh", SMALL_SPEC, fmt, progress=False, **bucketing)
    assert manifest == fresh
    assert snapshot(out) == snapshot(tmp_path / "fresh")
    # and back to the source's bucketing and format: the source again
    convert_dataset(out, tmp_path / "back", "hdf5", boundaries=open_dataset(
        datasets["hdf5"]).boundaries, progress=False)
    assert snapshot(tmp_path / "back") == snapshot(datasets["hdf5"])


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_a_dataset_of_the_old_layout_converts_to_the_new_one(datasets, tmp_path, fmt):
    old = tmp_path / "old"
    shutil.copytree(datasets[fmt], old)
    as_old_layout(old)
    before = snapshot(old)
    verified = run_cli("verify", old, "--labels", "--quiet")
    assert verified.returncode == 0 and "OK (5 shards" in verified.stdout
    assert "note: old layout (manifest_version 1" in verified.stdout
    assert "layout     old (manifest_version 1" in run_cli("inspect", old).stdout
    result = run_cli("convert", old, tmp_path / "new", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("converted 300 sequences")
    assert snapshot(tmp_path / "new") == snapshot(datasets[fmt])
    assert snapshot(old) == before  # the source is only read


def test_generate_resume_refuses_the_old_layout_naming_convert(datasets, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(datasets["hdf5"], old)
    as_old_layout(old)
    before = snapshot(old)
    args = ["--num-sequences", "300", "--seed", "7", "--chunk-size", "64", "--num-buckets",
            "6", "--quiet"]
    result = run_cli("generate", old, *args, "--resume")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "old layout (manifest_version 1" in lines[0]
    assert f"seqdata convert {old} NEW" in lines[0]
    assert snapshot(old) == before
    # --overwrite replaces it with the current layout
    assert run_cli("generate", old, *args, "--overwrite").returncode == 0
    assert snapshot(old) == snapshot(datasets["hdf5"])


def test_convert_on_the_command_line_shows_progress_unless_quiet(datasets, tmp_path):
    result = run_cli("convert", datasets["hdf5"], tmp_path / "a", "--format", "parquet",
                     "--num-buckets", "3")
    assert result.returncode == 0, result.stderr
    assert "convert a [" in result.stderr and "5/5" in result.stderr
    assert result.stdout.strip() == (f"converted 300 sequences "
                                      f"({open_dataset(datasets['hdf5']).num_timesteps:,} "
                                      f"timesteps) from {datasets['hdf5']} to {tmp_path / 'a'}: "
                                      f"5 parquet shards, 3 buckets")
    quiet = run_cli("convert", tmp_path / "a", tmp_path / "b", "--boundaries", "50,99",
                    "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert open_dataset(tmp_path / "b").boundaries == (50, 99)
    assert open_dataset(tmp_path / "b").format == "parquet"  # the source's format
    assert run_cli("verify", tmp_path / "b", "--labels", "--quiet").returncode == 0


def one_line_error(result, *needles: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("seqdata convert: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_input_is_one_line_and_writes_nothing(datasets, tmp_path):
    src = datasets["hdf5"]
    dst = tmp_path / "dst"
    one_line_error(run_cli("convert", tmp_path / "missing", dst), "missing", "does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("convert", tmp_path / "empty", dst), "not a finished seqdata")
    one_line_error(run_cli("convert", src, dst, "--boundaries", "20,50"),
                   "last boundary must be >= the max length")
    one_line_error(run_cli("convert", src, dst, "--format", "csv"), "invalid choice")
    one_line_error(run_cli("convert", src, dst, "--num-buckets", "2", "--boundaries", "99"),
                   "not allowed with")
    one_line_error(run_cli("convert", src, src), "is the source dataset")
    one_line_error(run_cli("convert", src, src / "data" / "x"), "lies inside the source")
    one_line_error(run_cli("convert", src, src.parent), "holds the source")
    assert not dst.exists()
    (tmp_path / "afile").write_text("x")
    one_line_error(run_cli("convert", src, tmp_path / "afile"), "not a directory")
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    one_line_error(run_cli("convert", src, dst), "is not empty", "--overwrite")
    one_line_error(run_cli("convert", src, dst, "--overwrite"), "not part of a seqdata")
    assert snapshot(dst) == {"notes.txt": b"mine"}
    assert run_cli("verify", src, "--quiet").returncode == 0  # the source untouched


def test_overwrite_replaces_a_dataset(datasets, tmp_path):
    dst = tmp_path / "dst"
    convert_dataset(datasets["hdf5"], dst, num_buckets=2, progress=False)
    with pytest.raises(OutputError, match="pass overwrite=True"):
        convert_dataset(datasets["hdf5"], dst, "parquet", progress=False)
    convert_dataset(datasets["hdf5"], dst, "parquet", overwrite=True, progress=False)
    assert snapshot(dst) == snapshot(datasets["parquet"])


def test_a_damaged_source_stops_with_its_shard_named_and_leaves_nothing(datasets, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(datasets["hdf5"], src)
    victim = src / "data" / "shard-00003.h5"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0x10  # inside the values
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"data/shard-00003\.h5 is damaged"):
        convert_dataset(src, tmp_path / "dst", "parquet", progress=False)
    assert not (tmp_path / "dst").exists()  # three shards were written, then removed
    (tmp_path / "kept").mkdir()  # an empty directory of the caller's stays, emptied
    line = one_line_error(run_cli("convert", src, tmp_path / "kept", "--quiet"))
    assert "shard-00003.h5" in line and "damaged" in line
    assert list((tmp_path / "kept").iterdir()) == []
    victim.unlink()
    one_line_error(run_cli("convert", src, tmp_path / "dst"), "shard-00003.h5", "missing")
    assert not (tmp_path / "dst").exists()


def test_an_interrupted_conversion_leaves_no_dataset(datasets, tmp_path, monkeypatch):
    import seqdata.store.build

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(seqdata.store.build, "write_manifest", killed)
    with pytest.raises(Killed):
        convert_dataset(datasets["hdf5"], tmp_path / "dst", "parquet", progress=False)
    assert not (tmp_path / "dst").exists()


def test_the_old_layout_helper_gives_the_old_manifest(datasets, tmp_path):
    """`as_old_layout` undoes exactly what version 2 changed: its manifest is the version 1
    manifest's JSON (same fields, order and formatting), paths and version aside."""
    old = tmp_path / "old"
    shutil.copytree(datasets["parquet"], old)
    as_old_layout(old)
    ds = open_dataset(old)
    assert (old / "manifest.json").read_text() == ds.manifest.to_json()
