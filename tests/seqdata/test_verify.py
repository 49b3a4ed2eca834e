"""verify catches damaged shards and names each one."""

import shutil

import h5py
import numpy as np
import pytest

from seqdata import open_dataset, verify_dataset
from tests.helpers import reseal


@pytest.fixture(params=["hdf5", "parquet"])
def copy(request, tmp_path, datasets):
    path = tmp_path / request.param
    shutil.copytree(datasets[request.param], path)
    return path


def shard_files(path):
    return sorted((path / "data").iterdir())


def rel(path, shard):
    """A shard's path as the manifest and verify's report name it: ``data/shard-...``."""
    return shard.relative_to(path).as_posix()


def test_intact_datasets_verify(copy):
    report = verify_dataset(copy, labels=True)
    assert report.ok and report.num_shards == 5 and report.labels_checked


def test_flipped_bytes_are_caught_and_named(copy):
    rng = np.random.default_rng(0)
    files = shard_files(copy)
    for victim in (files[1], files[3]):
        data = bytearray(victim.read_bytes())
        data[int(rng.integers(len(data)))] ^= 0x40
        victim.write_bytes(bytes(data))
    report = verify_dataset(copy)
    assert report.bad_shards == [rel(copy, files[1]), rel(copy, files[3])]
    assert all("sha256" in p.message for p in report.problems)


def test_truncated_shards_are_caught(copy):
    victim = shard_files(copy)[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    report = verify_dataset(copy)
    assert report.bad_shards == [rel(copy, victim)]
    assert "truncated" in report.problems[0].message


def test_missing_shard_is_reported(copy):
    victim = shard_files(copy)[0]
    victim.unlink()
    assert verify_dataset(copy).problems[0].message == "missing"


def test_labels_flag_catches_wrong_labels_with_a_valid_hash(tmp_path, datasets):
    path = tmp_path / "ds"
    shutil.copytree(datasets["hdf5"], path)
    victim = shard_files(path)[1]
    with h5py.File(victim, "r+") as f:
        group = f[sorted(k for k in f if k.startswith("bucket_"))[0]]
        y = group["y"][()]
        y[:3] ^= 1
        group["y"][...] = y
    reseal(path, victim)
    assert verify_dataset(path).ok  # bytes, schema and counts are all consistent
    report = verify_dataset(path, labels=True)
    assert report.bad_shards == [rel(path, victim)]
    assert "3 labels differ from the lag-sum rule" in report.problems[0].message


def test_structural_damage_with_a_valid_hash_is_caught(tmp_path, datasets):
    path = tmp_path / "ds"
    shutil.copytree(datasets["hdf5"], path)
    victim = shard_files(path)[0]
    with h5py.File(victim, "r+") as f:
        del f[sorted(k for k in f if k.startswith("bucket_"))[-1]]["ids"]
    reseal(path, victim)
    report = verify_dataset(path)
    assert report.bad_shards == [rel(path, victim)]
    assert "holds ['offsets', 'x', 'y'], expected ['ids', 'offsets', 'x', 'y']" in \
        report.problems[0].message


def test_leaky_datasets_verify_by_their_own_rule(tmp_path):
    from seqdata import LagSumSpec, build_dataset

    build_dataset(tmp_path / "leaky", LagSumSpec(num_sequences=50, seed_compat_leak=True),
                  progress=False)
    report = verify_dataset(tmp_path / "leaky", labels=True)
    assert report.ok and report.leaky
    assert open_dataset(tmp_path / "leaky").manifest.leaky


def test_the_card_is_a_note_not_damage(copy):
    """README.md is documentation written from the manifest: edited or missing, the data
    still verifies, with a note."""
    from tests.helpers import run_cli

    assert verify_dataset(copy).notes == ()
    card = copy / "README.md"
    card.write_text(card.read_text() + "\nMy own notes.\n")
    report = verify_dataset(copy)
    assert report.ok and report.notes == ("README.md differs from the card of this manifest "
                                          "(edited, or written by another seqdata version)",)
    done = run_cli("verify", copy, "--quiet")
    assert done.returncode == 0 and f"{copy}: note: README.md differs" in done.stdout
    card.unlink()
    assert verify_dataset(copy).notes == ("README.md (the dataset card) is missing",)
