"""Generation on Dask: local clusters of worker processes started (and stopped) by the
tests; the same bytes as a local build, a worker killed mid-build, a build that cannot
finish, and the command line."""

from __future__ import annotations

import threading
import time

import psutil
import pytest
from distributed import Client, LocalCluster

import seqdata.store.build
import seqdata.store.cluster
from seqdata import LagSumSpec, OutputError, SpecError, build_dataset
from tests.helpers import clean_build, run_cli, snapshot


@pytest.fixture
def cluster():
    """A scheduler and 2 worker processes (each with a nanny that restarts it)."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as local:
        yield local
    time.sleep(0.5)
    left = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)
            if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    # multiprocessing's resource tracker serves this (test) process until it ends.
    left = [c for c in left if "multiprocessing.resource_tracker" not in c]
    assert not left, f"processes left behind: {left}"


def test_a_dask_build_of_200k_sequences_equals_a_local_build(cluster, tmp_path):
    spec = LagSumSpec(num_sequences=200_000, seed=3)
    expected = clean_build(tmp_path / "local", spec)
    build_dataset(tmp_path / "dask", spec, progress=False, scheduler=cluster.scheduler_address)
    assert snapshot(tmp_path / "dask") == expected


def test_a_worker_killed_mid_build_changes_nothing(cluster, tmp_path):
    spec = LagSumSpec(num_sequences=200_000, seed=4, chunk_size=4096)  # 49 chunks
    expected = clean_build(tmp_path / "local", spec)
    out = tmp_path / "dask"
    errors = []

    def build():
        try:
            build_dataset(out, spec, progress=False, scheduler=cluster.scheduler_address)
        except BaseException as e:  # raised in the test below
            errors.append(e)

    thread = threading.Thread(target=build)
    thread.start()
    while len(list((out / "data").glob("shard-*"))) < 3:
        assert thread.is_alive(), errors
        time.sleep(0.005)
    victim = next(iter(cluster.workers.values())).process.process.pid
    psutil.Process(victim).kill()  # its nanny starts a new one; its tasks run elsewhere
    killed_before_the_end = not (out / "manifest.json").exists()
    thread.join(timeout=120)
    assert not errors and not thread.is_alive()
    assert killed_before_the_end
    assert snapshot(out) == expected


def test_a_build_that_cannot_finish_fails_in_one_error_and_resumes(tmp_path, monkeypatch):
    """A chunk that fails on every try: OutputError naming it; what was built stays, and
    resume=True finishes the same bytes."""
    spec = LagSumSpec(num_sequences=3000, seed=5, chunk_size=500)
    expected = clean_build(tmp_path / "local", spec)
    real = seqdata.store.build.build_shard

    def flaky(spec, chunk, *args):
        if chunk == 3:
            raise OutputError(f"disk full writing chunk {chunk}")
        return real(spec, chunk, *args)

    monkeypatch.setattr(seqdata.store.build, "build_shard", flaky)
    out = tmp_path / "dask"
    # Threads in this process: the patched function is what the workers run.
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as local, \
            Client(local), pytest.raises(OutputError, match=r"chunk 3 of .* failed on the "
                                                             r"Dask cluster .*disk full.*"
                                                             r"resume=True"):
        build_dataset(out, spec, progress=False, scheduler=local.scheduler_address)
    assert not (out / "manifest.json").exists()
    assert len(list((out / "data").glob("shard-*"))) == spec.num_chunks - 1
    monkeypatch.setattr(seqdata.store.build, "build_shard", real)
    build_dataset(out, spec, progress=False, resume=True)
    assert snapshot(out) == expected


def test_bad_schedulers_are_one_line_errors(tmp_path, monkeypatch):
    spec = LagSumSpec(num_sequences=100)
    for bad in ("local:0", "local", "", "no spaces allowed"):
        with pytest.raises(SpecError, match="scheduler must be a Dask scheduler's address"):
            build_dataset(tmp_path / "x", spec, progress=False, scheduler=bad)
    with pytest.raises(SpecError, match=r"either workers .* or scheduler"):
        build_dataset(tmp_path / "x", spec, progress=False, scheduler="local:1", workers=2)
    monkeypatch.setattr(seqdata.store.cluster, "CONNECT_SECONDS", 1)
    with pytest.raises(OutputError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        build_dataset(tmp_path / "x", spec, progress=False, scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "x").exists()  # nothing prepared for a cluster out of reach


def test_the_command_runs_a_local_cluster_and_stops_it(tmp_path):
    result = run_cli("generate", tmp_path / "dask", "--num-sequences", "5000",
                     "--chunk-size", "1000", "--scheduler", "local:2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert run_cli("generate", tmp_path / "local", "--num-sequences", "5000",
                   "--chunk-size", "1000", "--quiet").returncode == 0
    assert snapshot(tmp_path / "dask") == snapshot(tmp_path / "local")
    both = run_cli("generate", tmp_path / "x", "--workers", "2", "--scheduler", "local:2")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
