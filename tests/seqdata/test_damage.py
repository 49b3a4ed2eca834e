"""Damage anywhere is found: verify names it, reading stops on it (docs/RELIABILITY.md)."""

import shutil

import h5py
import numpy as np
import pytest

from seqdata import ManifestError, ShardError, open_dataset, verify_dataset
from tests.helpers import reseal, run_cli

TRIALS_PER_FORMAT = 30


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_random_damage_is_always_caught_and_named(tmp_path, datasets, fmt):
    rng = np.random.default_rng({"hdf5": 1, "parquet": 2}[fmt])
    pristine = datasets[fmt]
    # Every file of the dataset but its card (documentation: see test_verify.py).
    files = sorted(p.relative_to(pristine).as_posix() for p in pristine.rglob("*")
                   if p.is_file() and p.name != "README.md")
    assert len(files) == 6
    for trial in range(TRIALS_PER_FORMAT):
        path = tmp_path / f"t{trial}"
        shutil.copytree(pristine, path)
        name = files[int(rng.integers(len(files)))]
        victim = path / name
        data = bytearray(victim.read_bytes())
        offset = int(rng.integers(len(data)))
        if rng.random() < 0.5:
            data[offset] ^= int(rng.integers(1, 256))
            what = f"byte {offset} of {victim.name} changed"
        else:
            del data[offset:]
            what = f"{victim.name} truncated at {offset}"
        victim.write_bytes(bytes(data))
        if victim.name == "manifest.json":
            with pytest.raises(ManifestError, match=r"manifest\.json"):
                verify_dataset(path)
        else:
            report = verify_dataset(path)
            assert report.bad_shards == [name], what
        shutil.rmtree(path)


def test_reading_a_damaged_shard_stops_with_its_name(tmp_path, datasets):
    path = tmp_path / "ds"
    shutil.copytree(datasets["hdf5"], path)
    victim = path / "data" / "shard-00002.h5"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0x10  # inside the values: h5py alone would read it without complaint
    victim.write_bytes(bytes(data))
    ds = open_dataset(path)
    with pytest.raises(ShardError, match=r"data/shard-00002\.h5 is damaged"):
        for _ in ds.batches(batch_size=8):
            pass
    result = run_cli("verify", path, "--quiet")
    assert result.returncode == 1 and "data/shard-00002.h5" in result.stdout


def test_object_dtypes_in_hdf5_are_refused(tmp_path, datasets):
    path = tmp_path / "ds"
    shutil.copytree(datasets["hdf5"], path)
    victim = path / "data" / "shard-00001.h5"
    with h5py.File(victim, "r+") as f:
        group = f[sorted(k for k in f if k.startswith("bucket_"))[0]]
        n = len(group["y"])
        del group["y"]
        group.create_dataset("y", data=np.array(["0"] * n, dtype=object),
                             dtype=h5py.string_dtype())
    reseal(path, victim)
    with pytest.raises(ShardError, match="y: expected uint8 data, found object"):
        open_dataset(path).read_shard(1)
    assert verify_dataset(path).bad_shards == ["data/shard-00001.h5"]
