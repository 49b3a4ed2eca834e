"""The seqdata CLI, run as real subprocesses."""

import json
import os
import shutil
import subprocess
import sys

from seqdata import open_dataset
from tests.helpers import ROOT, run_cli


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_generate_inspect_verify(tmp_path):
    out = tmp_path / "ds"
    gen = run_cli("generate", out, "--num-sequences", "500", "--seed", "3", "--chunk-size",
                  "200", "--format", "parquet", "--workers", "2", "--num-buckets", "5")
    assert gen.returncode == 0, gen.stderr
    assert "wrote 500 sequences" in gen.stdout
    assert "generate ds [" in gen.stderr  # progress
    ds = open_dataset(out)
    assert ds.format == "parquet" and len(ds.shards) == 3 and len(ds.boundaries) == 5

    ins = run_cli("inspect", out)
    assert ins.returncode == 0, ins.stderr
    assert "sequences  500" in ins.stdout and "length histogram (10..99)" in ins.stdout
    assert "LEAKY" not in ins.stdout
    assert f"card       {out / 'README.md'}" in ins.stdout
    assert "expected padding of other choices" in ins.stdout and "one bucket" in ins.stdout
    plotted = run_cli("inspect", out, "--plot", tmp_path / "buckets.png")
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "buckets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(run_cli("inspect", out, "--json").stdout)
    assert summary["num_sequences"] == 500 and len(summary["bucket_padding"]) == 5

    ver = run_cli("verify", out, "--labels")
    assert ver.returncode == 0 and "OK (3 shards" in ver.stdout


def test_generate_script_takes_the_same_options(tmp_path):
    import subprocess

    out = tmp_path / "ds"
    result = subprocess.run([sys.executable, ROOT / "scripts" / "generate.py", out,
                             "--num-sequences", "100", "--lengths", "lognormal",
                             "--max-length", "200", "--quiet"],
                            capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    ds = open_dataset(out)
    assert ds.spec.lengths.kind == "lognormal" and ds.spec.lengths.high == 200


def test_leaky_dataset_is_called_leaky(tmp_path):
    out = tmp_path / "leaky"
    assert run_cli("generate", out, "--num-sequences", "50", "--seed-compat-leak",
                   "--quiet").returncode == 0
    assert "LEAKY" in run_cli("inspect", out).stdout
    ver = run_cli("verify", out, "--labels", "--quiet")
    assert ver.returncode == 0 and "LEAKY" in ver.stdout


def test_verify_exit_code_names_the_bad_shard(tmp_path, datasets):
    path = tmp_path / "ds"
    shutil.copytree(datasets["hdf5"], path)
    victim = path / "data" / "shard-00003.h5"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = run_cli("verify", path, "--quiet")
    assert result.returncode == 1
    assert f"BAD {victim}" in result.stdout
    assert "1 of 5 shards damaged" in result.stderr


def test_a_bad_manifest_is_one_line(tmp_path, datasets):
    path = tmp_path / "ds"
    shutil.copytree(datasets["parquet"], path)
    (path / "manifest.json").write_text('{"manifest_version": 99}')
    result = run_cli("verify", path)
    assert_one_line_error(result, "manifest_version is 99")


def test_a_reader_that_goes_away_is_not_an_error(h5_dataset):
    """`seqdata inspect DIR | head`: the pipe is closed before anything is written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "seqdata", "inspect", str(h5_dataset.root)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    child.stdout.close()  # no reader left: its first write fails with EPIPE
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0 and err == ""
