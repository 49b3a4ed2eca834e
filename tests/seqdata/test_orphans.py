"""A killed build dies whole, and its directory is locked while any of it lives.

Only the build's own process is killed here, as a job scheduler or the OOM killer does
(docs/RELIABILITY.md): its pool workers and the forkserver must end with it, write
nothing more, and release the caller's pipes; another build of the directory is refused
until the last of them has ended.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from seqdata import LagSumSpec, verify_dataset
from tests import helpers
from tests.helpers import (
    DEADLINE,
    clean_build,
    group_members,
    group_states,
    run_cli,
    snapshot,
    survivors,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process groups are read from /proc")

SPEC = LagSumSpec(num_sequences=24000, seed=11, chunk_size=1000)
ARGS = ["--num-sequences", "24000", "--seed", "11", "--chunk-size", "1000", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return clean_build(tmp_path_factory.mktemp("ref"), SPEC)


def start_generate(out, *extra):
    """A 2-worker `seqdata generate OUT`, its stdout piped too (the test checks that a
    killed build's workers do not hold the caller's pipes)."""
    return helpers.start_generate(out, *ARGS, "--workers", "2", *extra,
                                  stdout=subprocess.PIPE)


def stop_group(pgid):
    """SIGSTOP every process of group ``pgid`` and wait until each has stopped.

    A signal takes effect when a process next leaves the kernel, so a write may finish
    first. A process that is starting a program (vfork, as `uname -p` is run when
    modules are imported) waits, in state D, for its child, which is stopped.
    """
    os.killpg(pgid, signal.SIGSTOP)
    end = time.monotonic() + DEADLINE
    while True:
        states = group_states(pgid)
        stopped = {pid for pid, (state, _) in states.items() if state in "TZX"}
        waiting = {parent for pid, (_, parent) in states.items()
                   if pid in stopped and states.get(parent, ("",))[0] == "D"}
        if set(states) <= stopped | waiting:
            return
        assert time.monotonic() < end, states
        time.sleep(0.01)


def files(out):
    return snapshot(out) if out.exists() else {}


def published(names):
    """How many of ``names`` (relative to the dataset directory) are shards at their
    final names."""
    return sum(re.fullmatch(r"data/shard-\d{5}\.h5", name) is not None for name in names)


def listing(out):
    """The names in ``out`` and in its data/, relative to ``out``."""
    names = os.listdir(out) if out.exists() else []
    if "data" in names:
        with contextlib.suppress(FileNotFoundError):  # an overwrite removing it
            names += [f"data/{n}" for n in os.listdir(out / "data")]
    return names


def wait_for_shards(proc, out, count=1):
    """Wait until a running build has published ``count`` shards."""
    end = time.monotonic() + 120
    while not (out.exists() and published(listing(out)) >= count):
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.002)


def probe(out):
    """When an uninterrupted build publishes its first shard, and then one more shard
    on average (seconds)."""
    start = time.monotonic()
    proc = start_generate(out)
    first = last = None
    while proc.poll() is None:
        if first is None and out.exists() and published(listing(out)):
            first = time.monotonic() - start
        if last is None and (out / "manifest.json").exists():
            last = time.monotonic() - start
        time.sleep(0.002)
    assert proc.wait() == 0, proc.communicate()
    end = time.monotonic() - start
    first, last = first or end, last or end
    return first, (last - first) / (SPEC.num_chunks - 1)


@pytest.mark.parametrize(("sig", "trials"), [(signal.SIGKILL, 5), (signal.SIGTERM, 3)],
                         ids=["SIGKILL", "SIGTERM"])
def test_killing_the_build_process_ends_every_process_of_the_build(tmp_path, reference, sig,
                                                                     trials):
    first, step = probe(tmp_path / "probe")
    rng = np.random.default_rng(int(sig))
    states = []
    for trial in range(trials):
        out = tmp_path / f"kill{trial}"
        proc = start_generate(out)
        if trial == 0:  # while the pool starts, about when the first shard comes
            time.sleep(rng.uniform(0.5 * first, first))
        else:  # mid-build: after a random number of shards, at a random moment
            shards = int(rng.integers(1, SPEC.num_chunks - 2))
            wait_for_shards(proc, out)
            start = time.monotonic()
            wait_for_shards(proc, out, shards)
            # Within about two shards' time, as this build goes: the probe's pace may be
            # another (a machine busier or less busy then, as when tests run in parallel).
            pace = (time.monotonic() - start) / (shards - 1) if shards > 1 else step
            time.sleep(rng.uniform(0, 2 * pace))
        os.kill(proc.pid, sig)  # the build's process alone, not its group
        proc.wait()
        where = f"trial {trial} ({sig.name})"
        assert not survivors(proc.pid), f"{where}: processes of the build outlived it"
        proc.communicate(timeout=DEADLINE)  # and nothing holds the caller's pipes open
        before = files(out)
        time.sleep(0.3)
        assert files(out) == before, f"{where}: the directory changed after the kill"
        states.append((published(before), "manifest.json" in before, proc.returncode == -sig))
        resumed = run_cli("generate", out, *ARGS, "--resume")
        assert resumed.returncode == 0, f"{where}: {resumed.stderr}"
        assert snapshot(out) == reference, where
        assert verify_dataset(out).ok
    # The kills that matter landed mid-build: some shards written, no manifest yet.
    assert sum(0 < n < SPEC.num_chunks and not m and k for n, m, k in states) >= trials - 2, \
        states


def test_a_second_build_is_refused_while_one_runs_and_changes_nothing(tmp_path, reference):
    out = tmp_path / "ds"
    proc = start_generate(out)
    wait_for_shards(proc, out)
    try:
        stop_group(proc.pid)  # the whole build, frozen: it holds its lock
        assert proc.poll() is None and not (out / "manifest.json").exists()
        before = snapshot(out)
        for extra in ([], ["--overwrite"], ["--resume"]):
            result = run_cli("generate", out, *ARGS, *extra)
            assert result.returncode == 2, (extra, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
            assert lines[0] == (f"seqdata generate: error: {out} is being built by process "
                                f"{proc.pid}; wait for it to end or stop it")
        assert snapshot(out) == before
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert snapshot(out) == reference  # the running build was not disturbed


def test_the_workers_of_a_killed_build_keep_its_directory_locked(tmp_path, reference):
    out = tmp_path / "ds"
    proc = start_generate(out)
    wait_for_shards(proc, out)
    try:
        stop_group(proc.pid)  # stopped workers cannot end yet
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert group_members(proc.pid)  # the forkserver and the workers
        result = run_cli("generate", out, *ARGS, "--resume")
        assert result.returncode == 2
        assert (f"{out} is still locked by the workers of build process {proc.pid}, which "
                f"has ended") in result.stderr
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    assert not survivors(proc.pid)
    resumed = run_cli("generate", out, *ARGS, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(out) == reference


def test_an_overwrite_right_after_a_kill_is_refused_or_whole(tmp_path, reference):
    """The issue's case: `generate --overwrite` at once after the build process was killed
    must not race the killed build's workers."""
    for trial in range(2):
        out = tmp_path / f"ds{trial}"
        proc = start_generate(out)
        wait_for_shards(proc, out, 3 + 8 * trial)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        result = run_cli("generate", out, *ARGS, "--workers", "2", "--overwrite")
        if result.returncode == 2:  # a worker of the killed build still lived
            assert "is still locked by the workers of build process" in result.stderr
            assert not survivors(proc.pid)
            result = run_cli("generate", out, *ARGS, "--workers", "2", "--overwrite")
        assert result.returncode == 0, result.stderr
        assert not survivors(proc.pid)
        assert snapshot(out) == reference
        assert verify_dataset(out).ok
