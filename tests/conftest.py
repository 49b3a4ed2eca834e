"""Shared fixtures: small real datasets in both formats, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqdata import build_dataset, open_dataset
from tests.helpers import SMALL_SPEC


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
