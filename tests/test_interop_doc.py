"""Every snippet of docs/INTEROP.md runs, in order, on real datasets: Python blocks in a
fresh interpreter each, bash blocks in a shell, with DIR, H5DIR, RUN and CONVERTED
pointing into a temporary directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from seqdata import LagSumSpec, build_dataset
from tests.helpers import ROOT

DOC = ROOT / "docs" / "INTEROP.md"
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)
NAMES = ("H5DIR", "DIR", "RUN", "CONVERTED")


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_page_has_a_snippet_for_each_path():
    text = "\n".join(code for _, code in blocks())
    for needle in ("seqdata.torch.BatchDataset", "seqdata.torch.loader", "pad_collate",
                   "seqdata.jax.batches", "seqdata.tf.dataset", "seqdata.keras.keras_input",
                   "KERAS_BACKEND=jax", "KERAS_BACKEND=torch", "keras.saving.load_model",
                   "pd.read_parquet", "pq.read_table", "pads.dataset", "pl.read_parquet",
                   "duckdb.sql", "load_dataset", "h5py.File", "seqdata convert"):
        assert needle in text, needle


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("interop_doc")
    spec = LagSumSpec(num_sequences=600, seed=4, chunk_size=256)
    build_dataset(base / "pq", spec, "parquet", num_buckets=4, progress=False)
    build_dataset(base / "h5", spec, "hdf5", num_buckets=4, progress=False)
    return {"DIR": base / "pq", "H5DIR": base / "h5", "RUN": base / "run",
            "CONVERTED": base / "converted"}


def substitute(code: str, paths: dict[str, Path]) -> str:
    for name in NAMES:
        code = re.sub(rf"\b{name}\b", str(paths[name]), code)
    return code.replace(".venv/bin/", str(Path(sys.executable).parent) + "/")


def test_every_snippet_runs(paths):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    ran = 0
    for kind, code in blocks():
        code = substitute(code, paths)
        command = ([sys.executable, "-c", code] if kind == "python"
                   else ["bash", "-euo", "pipefail", "-c", code])
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,
                                timeout=600)
        assert result.returncode == 0, f"{code}\n{result.stderr[-3000:]}"
        ran += 1
    assert ran == len(blocks()) >= 12
    assert (paths["RUN"] / "model.keras").is_file()
    assert (paths["CONVERTED"] / "manifest.json").is_file()
