"""The dataset card, DIR/README.md: written from the manifest, deterministic, and every
snippet in it runs against the dataset it describes."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from seqdata import LagSumSpec, LogNormalLengths, build_dataset, open_dataset
from seqdata.store.card import CARD_MARK, card_text, size_category, snippets
from tests.helpers import ROOT, SMALL_SPEC


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_the_card_is_written_from_the_manifest(datasets, fmt):
    ds = open_dataset(datasets[fmt])
    text = (datasets[fmt] / "README.md").read_text()
    assert text == card_text(ds.manifest)
    assert CARD_MARK in text
    meta = front_matter(text)
    assert meta["tags"][0] == "seqdata" and meta["size_categories"] == ["n<1K"]
    if fmt == "parquet":  # what makes datasets.load_dataset(DIR) read the shards
        assert meta["configs"] == [{"config_name": "default", "data_files": [
            {"split": "train", "path": "data/*.parquet"}]}]
    else:  # HDF5 groups are not rows: nothing for load_dataset, no viewer
        assert "configs" not in meta and meta["viewer"] is False
        assert "seqdata convert DIR OUT --format parquet" in text


def table(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_card_tells_what_the_data_is_and_its_counts(datasets):
    ds = open_dataset(datasets["hdf5"])
    m = ds.manifest
    text = (datasets["hdf5"] / "README.md").read_text()
    spec = dict(table(text, "| spec |"))
    assert spec == {"features": "5", "window": "5", "threshold": "2.5",
                    "lengths": "uniform over 10..99", "sequences": "300", "seed": "7",
                    "chunk size": "64 (ids per shard)",
                    "leak mode": "off (`seed_compat_leak` false)"}
    counts = dict(table(text, "| | |"))
    assert counts["sequences"] == "300"
    assert counts["timesteps"].startswith(f"{m.num_timesteps:,} (mean length")
    assert counts["shards"] == "5 HDF5 files in `data/`"
    assert counts["bytes"] == f"{sum(s.size for s in m.shards):,}"
    assert counts["buckets"].startswith("6; ")
    buckets = table(text, "| bucket |")
    assert [int(r[2].replace(",", "")) for r in buckets] == m.bucket_sequences.tolist()
    assert [int(r[3].replace(",", "")) for r in buckets] == m.bucket_timesteps.tolist()
    assert [r[1].split("..")[1] for r in buckets] == [str(b) for b in m.boundaries]
    histogram = text.split("## Length histogram (10..99)\n\n```text\n")[1].split("```")[0]
    assert sum(int(line.split()[-1]) for line in histogram.splitlines()) == 300
    # the real names of the files
    assert "data/shard-00000.h5" in text and "data/shard-00004.h5" in text
    assert f"checksum `{m.checksum[:16]}`" in text


def test_leaky_lognormal_and_single_shard_cards(tmp_path):
    spec = LagSumSpec(num_sequences=40, seed=2, seed_compat_leak=True,
                      lengths=LogNormalLengths(median=30, sigma=0.5, low=5, high=120))
    build_dataset(tmp_path / "d", spec, "parquet", progress=False)
    text = (tmp_path / "d" / "README.md").read_text()
    assert "**LEAKY dataset**" in text
    assert dict(table(text, "| spec |"))["leak mode"] == "**on**: feature 0 holds the lag sum"
    assert "log-normal, median 30, sigma 0.5, clipped to 5..120" in text
    assert "data/shard-00000.parquet" in text and "more)" not in text


def test_the_card_names_no_path_and_no_time(datasets, tmp_path):
    """Built elsewhere, later: the same bytes (a build stays byte-identical)."""
    other = tmp_path / "another-name"
    build_dataset(other, SMALL_SPEC, "parquet", num_buckets=6, progress=False)
    assert (other / "README.md").read_bytes() == (datasets["parquet"] / "README.md").read_bytes()
    assert str(datasets["parquet"]) not in (datasets["parquet"] / "README.md").read_text()


def test_size_categories():
    assert [size_category(n) for n in (1, 999, 1000, 99_999, 100_000, 10**12, 10**13)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "n>1T", "n>1T"]


RUNNER = """
import json, sys
from seqdata.store.card import snippets
from seqdata.store.manifest import read_manifest
root, skip = sys.argv[1], set(sys.argv[2:])
results = {}
for name, code in snippets(read_manifest(root)).items():
    if name in skip:
        continue
    code = code.replace('"DIR', '"' + root).replace("'DIR", "'" + root)
    try:
        exec(compile(code, name, "exec"), {"__name__": "__main__"})
        results[name] = "ok"
    except ModuleNotFoundError as e:
        results[name] = "skipped: " + str(e)
    except Exception as e:
        results[name] = f"FAILED: {type(e).__name__}: {e}"
print("RESULTS " + json.dumps(results))
"""


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_every_snippet_of_the_card_runs(datasets, fmt, tmp_path):
    """Each snippet with DIR replaced, in a fresh process (frameworks are imported there).
    The Keras snippet, the same for both formats, trains once (on Parquet)."""
    names = list(snippets(open_dataset(datasets[fmt]).manifest))
    skip = ["keras"] if fmt == "hdf5" else []
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "TF_CPP_MIN_LOG_LEVEL": "3",
           "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", RUNNER, str(datasets[fmt]), *skip],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULTS ")), None)
    assert line is not None, done.stderr[-3000:]
    results = json.loads(line.removeprefix("RESULTS "))
    assert sorted(results) == sorted(n for n in names if n not in skip)
    failed = {n: r for n, r in results.items() if r.startswith("FAILED")}
    assert not failed, failed
    # pandas, pyarrow, polars, DuckDB, datasets, h5py and seqdata are always there
    core = {"seqdata", "pandas", "pyarrow", "polars", "duckdb", "datasets", "h5py"}
    assert all(results[n] == "ok" for n in core & set(results)), results
    assert re.search(r'"DIR|\'DIR', "".join(snippets(open_dataset(datasets[fmt]).manifest)
                                             .values()))
