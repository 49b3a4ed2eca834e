"""Generation survives kills, full disks and write errors (docs/RELIABILITY.md)."""

import contextlib
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from seqdata import LagSumSpec, OutputError, build_dataset, verify_dataset
from seqdata.store.journal import JOURNAL_NAME
from tests import helpers
from tests.helpers import clean_build, run_cli, snapshot

KILL_SPEC = LagSumSpec(num_sequences=24000, seed=11, chunk_size=1000)
ARGS = ["--num-sequences", "24000", "--seed", "11", "--chunk-size", "1000", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return clean_build(tmp_path_factory.mktemp("ref"), KILL_SPEC)


def start_generate(out, *extra):
    return helpers.start_generate(out, *ARGS, *extra)


def semaphores(pid) -> set[int]:
    """The inodes of the named semaphores (/dev/shm/sem.*) that process ``pid`` has
    mapped: ``sem_open`` maps each one it makes. Empty where there is no /proc."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as f:
        return {int(fields[4]) for fields in map(str.split, f)
                if len(fields) > 5 and fields[5].startswith("/dev/shm/sem.")}
    return set()


def left_semaphores(inodes: set[int]) -> list[Path]:
    """The named semaphores in /dev/shm among ``inodes``."""
    shm = Path("/dev/shm")
    found = []
    for path in shm.glob("sem.*") if inodes else ():
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino in inodes:
                found.append(path)
    return found


def kill_after(out, shards: int, jitter: float) -> set[int]:
    """Start a 2-worker build of ``out``, wait until ``shards`` shards are published (or
    the build ends), sleep ``jitter`` seconds more and SIGKILL the whole process group;
    the inodes of the semaphores of its pool.

    Kill moments are counted in published shards, not timed from a probe build: a
    machine that runs slower or faster than during the probe would move them all.

    The group holds multiprocessing's resource tracker, which would have removed the
    pool's semaphores: they are removed here, only those of this build (known by the
    inodes its process maps, made with the pool, before any shard)."""
    proc = start_generate(out, "--workers", "2")
    while proc.poll() is None and len(list(out.glob("data/shard-*.h5"))) < shards:
        time.sleep(0.001)
    made = semaphores(proc.pid)
    time.sleep(jitter)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: parent and workers
    proc.wait()
    # SIGKILL reaches the workers of a loaded machine a moment after the parent; until
    # they are gone a resume is rightly refused ("still locked by the workers of ...").
    assert not helpers.survivors(proc.pid), "the killed build's workers outlived it"
    for path in left_semaphores(made):
        path.unlink(missing_ok=True)
    return made


def test_resume_after_sigkill_at_random_moments(tmp_path, reference):
    rng = np.random.default_rng(2024)
    states, made = [], set()
    # Ten kills after a random number of published shards (in shard writes, between
    # shards, while the manifest is written), two once every shard is out.
    targets = [*rng.integers(1, KILL_SPEC.num_chunks, size=10), KILL_SPEC.num_chunks,
               KILL_SPEC.num_chunks]
    for trial, target in enumerate(targets):
        out = tmp_path / f"kill{trial}"
        jitter = float(rng.uniform(0, 0.01))
        made |= kill_after(out, int(target), jitter)
        shards = len(list(out.glob("data/shard-*.h5"))) if out.exists() else 0
        states.append((shards, (out / "manifest.json").exists()))
        resumed = run_cli("generate", out, *ARGS, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert snapshot(out) == reference, f"trial {trial} after {target} shards"
        assert verify_dataset(out).ok
    # Most kills landed mid-build: some shards (or all) written and no manifest yet.
    assert sum(0 < n <= KILL_SPEC.num_chunks and not m for n, m in states) >= 5, states
    assert not left_semaphores(made)  # the killed builds left no semaphore in /dev/shm


class Killed(BaseException):
    """Stands for a SIGKILL at a chosen point of an in-process build."""


def interrupted_build(out, monkeypatch):
    """A build stopped just before its manifest: every shard and the journal are there."""
    import seqdata.store.build

    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(seqdata.store.build, "write_manifest", killed)
        with pytest.raises(Killed):
            build_dataset(out, KILL_SPEC, "hdf5", progress=False)
    assert (out / JOURNAL_NAME).exists() and not (out / "manifest.json").exists()


@pytest.mark.parametrize("damage", ["zero bytes", "truncated", "no footer", "flipped byte",
                                    "missing", "left open", "torn journal", "stale manifest",
                                    "stale card"])
def test_resume_rebuilds_damaged_or_missing_shards(tmp_path, reference, monkeypatch, damage):
    out = tmp_path / "ds"
    interrupted_build(out, monkeypatch)
    victim = out / "data" / "shard-00007.h5"
    data = victim.read_bytes()
    if damage == "zero bytes":
        victim.write_bytes(b"")
    elif damage == "truncated":
        victim.write_bytes(data[: len(data) // 3])
    elif damage == "no footer":
        victim.write_bytes(data[:-64])
    elif damage == "flipped byte":
        victim.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "missing":
        victim.unlink()
    elif damage == "left open":  # a killed writer's temporary file (beside the manifest)
        victim.unlink()
        (out / "shard-00007.4242.tmp.h5").write_bytes(data[: len(data) // 2])
    elif damage == "stale card":  # killed while writing the card
        (out / "README.4242.tmp.md").write_text("---\npretty_name: half")
    elif damage == "torn journal":  # killed while appending the last line
        journal = (out / JOURNAL_NAME).read_bytes()
        (out / JOURNAL_NAME).write_bytes(journal[:-40])
    elif damage == "stale manifest":  # killed while writing the manifest
        (out / "manifest.4242.tmp.json").write_text('{"manifest_version": 1, "kin')
    result = run_cli("generate", out, *ARGS, "--resume")
    assert result.returncode == 0, result.stderr
    assert snapshot(out) == reference


def test_resume_of_an_interrupted_build_of_the_old_layout_rebuilds_it(tmp_path, reference,
                                                                      monkeypatch):
    """A journal of the old layout lists shards beside it: they are removed and every
    shard is built again, in data/."""
    out = tmp_path / "ds"
    interrupted_build(out, monkeypatch)
    for shard in sorted((out / "data").iterdir()):
        shard.rename(out / shard.name)
    (out / "data").rmdir()
    journal = out / JOURNAL_NAME
    journal.write_text(journal.read_text().replace('"path": "data/', '"path": "'))
    result = run_cli("generate", out, *ARGS, "--resume")
    assert result.returncode == 0, result.stderr
    assert snapshot(out) == reference


def test_resume_refuses_another_plan(tmp_path):
    out = tmp_path / "ds"
    proc = start_generate(out)
    assert proc.wait(120) == 0
    result = run_cli("generate", out, *ARGS[:-3], "--chunk-size", "50", "--resume", "--quiet")
    assert result.returncode == 2
    assert "another spec, format or boundaries" in result.stderr


def test_resume_of_a_finished_build_changes_nothing(tmp_path, reference):
    out = tmp_path / "ds"
    build_dataset(out, KILL_SPEC, progress=False)
    assert run_cli("generate", out, *ARGS, "--resume").returncode == 0
    assert snapshot(out) == reference


def test_resume_of_a_finished_build_writes_its_card_again(tmp_path, reference):
    """A card removed or edited (seqdata's own) is written again; someone's own README.md
    in its place is left alone."""
    out = tmp_path / "ds"
    build_dataset(out, KILL_SPEC, progress=False)
    card = out / "README.md"
    card.unlink()
    assert run_cli("generate", out, *ARGS, "--resume").returncode == 0
    assert snapshot(out) == reference
    card.write_text(card.read_text().replace("Lag-sum sequences", "My sequences"))
    assert run_cli("generate", out, *ARGS, "--resume").returncode == 0
    assert snapshot(out) == reference
    card.write_text("# my own notes\n")
    assert run_cli("generate", out, *ARGS, "--resume").returncode == 0
    assert card.read_text() == "# my own notes\n"


def mount_tmpfs(path, size):
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True)
    return result.returncode == 0


def fill(path):
    """Write zeros into ``path`` until its file system is full."""
    with contextlib.suppress(OSError), open(path, "wb") as f:
        while True:
            f.write(bytes(1 << 20))
            f.flush()


def test_a_too_small_disk_is_refused_up_front(tmp_path, monkeypatch):
    small = tmp_path / "small"
    if mount_tmpfs(small, "1m"):
        try:
            result = run_cli("generate", small / "ds", *ARGS)
            assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
            need = f"{KILL_SPEC.expected_bytes / 1e6:.1f} MB"
            assert f"24,000 sequences need about {need}" in result.stderr
            assert "1.0 MB are free" in result.stderr
            assert not (small / "ds").exists()
        finally:
            subprocess.run(["umount", str(small)], check=True)
    else:  # not allowed to mount here: the same, with a disk that says it is small
        from seqdata.store import build

        usage = build.shutil.disk_usage(tmp_path)
        monkeypatch.setattr(build.shutil, "disk_usage", lambda _: usage._replace(free=2**20))
        with pytest.raises(OutputError, match=r"24,000 sequences need about [\d.]+ MB"):
            build_dataset(small / "ds", KILL_SPEC, progress=False)
        assert not (small / "ds").exists()


def test_a_full_disk_is_a_clear_error_with_nothing_half_written(tmp_path, monkeypatch):
    small = tmp_path / "small"
    # Room for the estimate, then filled by someone else once the build has started.
    if mount_tmpfs(small, f"{KILL_SPEC.expected_bytes * 11 // 10 // 1024}k"):
        try:
            out = small / "ds"
            proc = start_generate(out)
            while proc.poll() is None and not (out / JOURNAL_NAME).exists():
                time.sleep(0.001)
            fill(small / "filler")
            stderr = proc.communicate(timeout=120)[1].decode()
            assert proc.returncode == 2, stderr
            assert stderr.strip().count("\n") == 0
            assert "No space left on device" in stderr and "Traceback" not in stderr
            names = sorted(p.name for p in out.iterdir())
        finally:
            subprocess.run(["umount", str(small)], check=True)
    else:  # not allowed to mount here: inject the same error into the shard writer
        from seqdata.store.formats.hdf5 import Hdf5Format

        real = Hdf5Format.encode

        def full_after_two(self, out, seqs, runs, chunk):
            if chunk >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(self, out, seqs, runs, chunk)

        monkeypatch.setattr(Hdf5Format, "encode", full_after_two)
        with pytest.raises(OutputError, match="No space left on device"):
            build_dataset(small / "ds", KILL_SPEC, progress=False)
        names = sorted(p.name for p in (small / "ds").iterdir())
    assert "manifest.json" not in names
    assert not [n for n in names if n.endswith(".tmp")]


def test_a_permission_error_is_a_clear_error(tmp_path, monkeypatch):
    import seqdata.store.atomic

    real = os.replace

    def refuse_shards(src, dst):
        if os.path.basename(dst).startswith("shard-"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        real(src, dst)

    monkeypatch.setattr(seqdata.store.atomic.os, "replace", refuse_shards)
    with pytest.raises(OutputError, match=r"cannot write .*shard-00000\.h5: Permission denied"):
        build_dataset(tmp_path / "ds", KILL_SPEC, progress=False)
    names = sorted(p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds").rglob("*"))
    assert names == [JOURNAL_NAME, "data"]  # no shard, no temporary file, no card, no manifest
