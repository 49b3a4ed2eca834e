"""open_dataset validates the manifest before any shard is opened."""

import json
import os
import shutil

import pytest

from seqdata import ManifestError, ShardError, open_dataset, verify_dataset
from seqdata.store.manifest import checksum
from tests.seqdata.test_convert import as_old_layout


@pytest.fixture
def dataset_copy(tmp_path, datasets):
    path = tmp_path / "ds"
    shutil.copytree(datasets["hdf5"], path)
    return path


def rewrite(path, edit):
    """Apply ``edit`` to the manifest document and re-seal it with a valid checksum."""
    doc = json.loads((path / "manifest.json").read_text())
    edit(doc)
    doc["checksum"] = checksum(doc)
    (path / "manifest.json").write_text(json.dumps(doc))


def test_round_trip(dataset_copy, h5_dataset):
    ds = open_dataset(dataset_copy)
    assert ds.manifest == h5_dataset.manifest
    assert ds.spec == h5_dataset.spec
    assert ds.num_sequences == sum(ds.bucket_sequences) == 300


def shard0(doc):
    return doc["shards"][0]


def impossible_bucket(shard):
    """Bucket 0 claims more timesteps than its sequences can hold; totals stay consistent."""
    shard["bucket_timesteps"][0] += 10**6
    shard["num_timesteps"] += 10**6


BAD_EDITS = [
    (lambda d: d.update(manifest_version=3),
     "manifest_version is 3, this seqdata reads versions 1 and 2"),
    (lambda d: d.pop("format"), "missing field format"),
    (lambda d: d.update(format="csv"), "format is 'csv', expected one of"),
    (lambda d: d.update(kind="other"), "kind is 'other'"),
    (lambda d: shard0(d).update(path="/etc/passwd"), "must be relative"),
    (lambda d: shard0(d).update(path="../x/shard-00000.h5"), "must not contain '..'"),
    (lambda d: shard0(d).update(path="data/shard-00000.parquet"), "must end with '.h5'"),
    (lambda d: shard0(d).update(path="shard-00000.h5"), r"must name a file in data/"),
    (lambda d: shard0(d).update(path="data/x/shard-00000.h5"), r"must name a file in data/"),
    (lambda d: shard0(d).update(chunk=3), r"shards\[0\].chunk is 3, expected 0"),
    (lambda d: shard0(d).update(num_sequences=-5), "num_sequences must be 64"),
    (lambda d: shard0(d)["bucket_sequences"].__setitem__(0, -1),
     r"shards\[0\].bucket_sequences\[0\] must be an integer >= 0, got -1"),
    (lambda d: shard0(d).update(num_timesteps=1), "its buckets sum to"),
    (lambda d: impossible_bucket(shard0(d)), "bucket 0 has .* impossible for lengths"),
    (lambda d: d["shards"].pop(), "lists 4 shards, the spec makes 5"),
    (lambda d: d.update(num_sequences=301), "num_sequences is 301, the shards add up to 300"),
    (lambda d: d["length_histogram"]["counts"].__setitem__(0, 999), "length_histogram"),
    (lambda d: d.update(boundaries=[50, 40]), "strictly increasing"),
    (lambda d: d["spec"].update(window=9), "window must be <= num_features"),
    (lambda d: d.update(leaky=True), "leaky is True but spec.seed_compat_leak is False"),
    (lambda d: shard0(d).update(sha256="xyz"), "64 hex digits"),
]


@pytest.mark.parametrize("edit, match", BAD_EDITS)
def test_bad_manifests_are_refused(dataset_copy, edit, match):
    rewrite(dataset_copy, edit)
    with pytest.raises(ManifestError, match=match):
        open_dataset(dataset_copy)


def test_a_damaged_manifest_fails_its_checksum(dataset_copy):
    text = (dataset_copy / "manifest.json").read_text()
    (dataset_copy / "manifest.json").write_text(text.replace('"seed": 7', '"seed": 8'))
    with pytest.raises(ManifestError, match="checksum does not match"):
        open_dataset(dataset_copy)


def test_a_path_through_a_link_outside_is_refused(dataset_copy, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(dataset_copy / "data" / "shard-00000.h5", outside / "shard-00000.h5")
    os.symlink(outside, dataset_copy / "linked")
    rewrite(dataset_copy, lambda d: shard0(d).update(path="linked/shard-00000.h5"))
    with pytest.raises(ManifestError, match="outside the dataset directory"):
        open_dataset(dataset_copy)


@pytest.mark.parametrize("content, match", [
    ("{", "is not valid JSON"),
    ("[]", "must hold a JSON object"),
    (b"\xff\xfe", "cannot read"),
])
def test_unreadable_manifests(dataset_copy, content, match):
    target = dataset_copy / "manifest.json"
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ManifestError, match=match):
        open_dataset(dataset_copy)


def test_missing_things(tmp_path, dataset_copy):
    with pytest.raises(ManifestError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(ManifestError, match="is not a directory"):
        open_dataset(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="not a finished seqdata dataset"):
        open_dataset(tmp_path / "empty")
    (dataset_copy / "data" / "shard-00002.h5").unlink()
    with pytest.raises(ShardError, match=r"data/shard-00002\.h5 listed in the manifest is "
                                         r"missing"):
        open_dataset(dataset_copy)


def test_the_data_directory_must_be_a_directory_of_the_dataset(dataset_copy, tmp_path):
    """data/ as a link (outside the directory or inside it) or as a file is refused."""
    data = dataset_copy / "data"
    shutil.move(data, tmp_path / "elsewhere")
    data.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ManifestError, match="outside the dataset directory"):
        open_dataset(dataset_copy)
    data.unlink()
    shutil.move(tmp_path / "elsewhere", dataset_copy / "shards")
    data.symlink_to("shards")
    with pytest.raises(ManifestError, match=r"data is a symbolic link, expected the directory"):
        open_dataset(dataset_copy)
    with pytest.raises(ManifestError, match="symbolic link"):
        verify_dataset(dataset_copy)
    data.unlink()
    data.write_text("not a directory")
    with pytest.raises(ManifestError, match=r"data is not a directory"):
        open_dataset(dataset_copy)


def test_a_dataset_of_the_old_layout_still_reads(dataset_copy, h5_dataset):
    """manifest_version 1: the shards beside the manifest, no card."""
    as_old_layout(dataset_copy)
    assert sorted(p.name for p in dataset_copy.iterdir())[:2] == ["manifest.json",
                                                                 "shard-00000.h5"]
    ds = open_dataset(dataset_copy)
    assert ds.manifest.version == 1 and ds.shards[0].path == "shard-00000.h5"
    a, b = ds.read_all(), h5_dataset.read_all()
    for field in ("x", "y", "offsets", "ids"):
        assert (getattr(a, field) == getattr(b, field)).all()
    report = verify_dataset(dataset_copy, labels=True)
    assert report.ok and "seqdata convert" in report.notes[0]
    # Its checksum is the one its own manifest holds: trainer runs that recorded it match.
    assert ds.checksum == json.loads((dataset_copy / "manifest.json").read_text())["checksum"]
