"""Shared fixtures: small real datasets in both formats, built once per session (once per
pytest-xdist worker), and the order of the tests across xdist workers."""

from __future__ import annotations

import multiprocessing.util
import os
import tempfile
from pathlib import Path

import pytest

from seqdata import build_dataset, open_dataset
from tests.helpers import SMALL_SPEC

# Where the tests that take longest are (each starts TensorFlow, PyTorch or JAX in
# subprocesses, a minute or more on a small machine): run first across xdist workers, so
# that none of them is left to the end, on one worker, while the others idle.
SLOW_FIRST = ("tests/trainer/", "tests/test_interop_doc.py", "tests/examples/",
              "tests/seqdata/test_card.py", "tests/benchmarks/", "tests/seqdata/test_orphans.py",
              "tests/seqdata/test_generate_resume.py", "tests/seqdata/test_dask.py")
# Memory a worker may need at once: its own (TensorFlow imported) and a test's processes
# (two TensorFlow workers, or two PyTorch ranks, each over 1 GB).
WORKER_BYTES = 4 << 30


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers a CPU, as far as the memory goes. Much of a test's time is
    spent starting frameworks in subprocesses and waiting for them: with one worker a
    CPU, 2 CPUs were a third idle."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = 2 * (cpus or 1)
    available = memory_available()
    if available is not None:
        workers = min(workers, available // WORKER_BYTES)
    return max(1, workers)


def memory_available() -> int | None:
    """Bytes of memory available (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: the tests as written
        return
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_FIRST))  # stable


@pytest.fixture(scope="session", autouse=True)
def temp_dir_under_basetemp(tmp_path_factory):
    """The temp directory of the tests and of every process they start is one under
    pytest's basetemp, which a passing run removes: doctests' ``mkdtemp``,
    multiprocessing's ``pymp-*`` of workers that end with ``os._exit``, and a killed
    trainer worker's scratch records no longer pile up in /tmp (a day of runs left 1,900
    such directories there)."""
    # This process's own pymp-* stays in /tmp: its exit removes it, after pytest has
    # removed basetemp (a removal that would then fail, printing a traceback).
    multiprocessing.util.get_temp_dir()
    tmp = str(tmp_path_factory.mktemp("tmp"))
    before = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = tmp, tmp
    yield
    if before[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before[0]
    tempfile.tempdir = before[1]


@pytest.fixture(scope="session")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """The same small spec built as HDF5 and as Parquet."""
    base = tmp_path_factory.mktemp("datasets")
    out = {}
    for fmt in ("hdf5", "parquet"):
        out[fmt] = base / fmt
        build_dataset(out[fmt], SMALL_SPEC, fmt, num_buckets=6, progress=False)
    return out


@pytest.fixture(scope="session")
def h5_dataset(datasets):
    return open_dataset(datasets["hdf5"])


@pytest.fixture(scope="session")
def pq_dataset(datasets):
    return open_dataset(datasets["parquet"])
