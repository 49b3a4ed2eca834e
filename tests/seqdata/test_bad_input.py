"""Bad invocations of both CLIs: one line on stderr, exit 2, no traceback, nothing changed.

One table for `seqdata` and `trainer` (docs/RELIABILITY.md, "Bad input").
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.helpers import run_cli, snapshot

S, T = "seqdata", "trainer"

CASES = [
    # wrong types
    (S, "generate {t}/o --num-sequences zero", "--num-sequences", "expected an integer"),
    (S, "generate {t}/o --threshold high", "--threshold", "expected a number"),
    (S, "generate {t}/o --format csv", "--format", "invalid choice"),
    (T, "train --data {t}/ds --out {t}/o --epochs two", "--epochs", "expected an integer"),
    (T, "train --data {t}/ds --out {t}/o --learning-rate fast", "--learning-rate"),
    (T, "evaluate --model {t}/m.keras --data {t}/ds --batch-size 1.5", "--batch-size"),
    # out-of-range values
    (S, "generate {t}/o --num-sequences 0", "expected an integer >= 1, got 0"),
    (S, "generate {t}/o --window 6", "window must be <= num_features 5, got 6"),
    (S, "generate {t}/o --threshold inf", "expected a finite number"),
    (S, "generate {t}/o --min-length 50 --max-length 20", "max length must be >= min length 50"),
    (S, "generate {t}/o --boundaries 20,50", "last boundary must be >= the max length"),
    (S, "generate {t}/o --workers 0", "--workers", "expected an integer"),
    (T, "train --data {t}/ds --out {t}/o --epochs 0", "--epochs"),
    (T, "train --data {t}/ds --out {t}/o --max-timesteps 10", "max_timesteps must be >= 99"),
    # missing or non-directory paths, a file where a directory is expected
    (S, "inspect {t}/missing", "missing", "does not exist"),
    (S, "verify {t}/afile", "afile", "is not a directory"),
    (S, "generate {t}/afile", "afile", "exists and is not a directory"),
    (T, "train --data {t}/missing --out {t}/o", "--data", "missing"),
    (T, "train --data {t}/afile --out {t}/o", "afile"),
    (T, "train --data {t}/ds --out {t}/afile", "afile"),
    (T, "train --data {t}/ds --out {t}/o --validation-data {t}/missing", "missing"),
    (T, "evaluate --model {t}/nope.keras --data {t}/ds", "nope.keras", "does not exist"),
    (T, "predict --model {t}/m.keras --input {t}/none.npy --output {t}/p.npy", "none.npy"),
    # a dataset or file of the wrong format
    (S, "verify {t}/wrongfmt", "must end with '.h5'"),
    (T, "train --data {t}/ds/data/shard-00000.h5 --out {t}/o", "shard-00000.h5"),
    (T, "evaluate --model {t}/m.keras --data {t}/ds", "m.keras", "not a Keras"),
    (T, "predict --model {t}/m.keras --input {t}/x.npy --output {t}/p.txt", "--output", ".npy"),
    (S, "inspect {t}/ds --plot {t}/p.txt", "--plot", "must name a .png file"),
    # conflicting options
    (S, "generate {t}/o --boundaries 20,99 --num-buckets 3", "not allowed with"),
    (S, "generate {t}/o --length-sigma 1", "--lengths lognormal"),
    (S, "generate {t}/o --resume --overwrite", "not allowed with"),
    (T, "train --data {t}/ds --out {t}/o --batch-size 8 --max-timesteps 100", "--max-timesteps"),
    (T, "train --data {t}/ds --out {t}/o --shuffle-block 0", "--shuffle-block"),
    (T, "train --data {t}/ds --out {t}/o --resume --overwrite", "--overwrite", "--resume"),
    # an unreadable directory, an empty dataset, a non-empty output
    (S, "inspect {t}/unreadable", "cannot read"),
    (S, "verify {t}/empty", "not a finished seqdata dataset"),
    (T, "train --data {t}/empty --out {t}/o", "not a finished seqdata dataset"),
    (S, "generate {t}/full", "is not empty", "--overwrite"),
    (T, "train --data {t}/ds --out {t}/full", "not empty"),
    # no command at all, an unknown one
    (S, "", "required"),
    (S, "frobnicate", "invalid choice"),
    (T, "frobnicate", "invalid choice"),
]


@pytest.fixture(scope="module")
def place(tmp_path_factory, datasets):
    """A directory holding every kind of bad target the table names."""
    t = tmp_path_factory.mktemp("bad")
    shutil.copytree(datasets["hdf5"], t / "ds")
    (t / "afile").write_text("x")
    (t / "empty").mkdir()
    (t / "full").mkdir()
    (t / "full" / "keep.txt").write_text("mine")
    (t / "m.keras").write_text("not a model")
    np.save(t / "x.npy", np.zeros((4, 5), np.float32))
    (t / "unreadable").mkdir()
    (t / "unreadable" / "manifest.json").mkdir()  # there, but not a readable file
    shutil.copytree(datasets["parquet"], t / "wrongfmt")
    doc = json.loads((t / "wrongfmt" / "manifest.json").read_text())
    doc["format"] = "hdf5"
    from seqdata.store.manifest import checksum

    doc["checksum"] = checksum(doc)
    (t / "wrongfmt" / "manifest.json").write_text(json.dumps(doc))
    return t


def test_the_table_is_large_enough():
    assert len(CASES) >= 25
    assert {c[0] for c in CASES} == {S, T}


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_bad_invocation(place, case):
    program, line, *needles = case
    before = snapshot(place)
    result = run_cli(*[word.format(t=place) for word in line.split()], module=program)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(program)
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert snapshot(place) == before
