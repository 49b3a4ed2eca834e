"""Shard formats, keyed by the manifest's ``format`` field.

Each format encodes the sequences of one chunk, grouped by bucket, as the bytes of one
shard file (in memory; the caller hashes and publishes them), and reads buckets of a shard
back as `Sequences`. h5py and pyarrow are imported only when their format is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from seqdata.checks import check_choice
from seqdata.sequences import Sequences
from seqdata.store.buffers import ReadBuffers
from seqdata.store.memfile import MemoryFile

# name -> (file suffix, module whose FORMAT reads and writes it): the one table of formats.
FORMATS = {"hdf5": (".h5", "seqdata.store.formats.hdf5"),
           "parquet": (".parquet", "seqdata.store.formats.parquet")}
SUFFIXES = {name: suffix for name, (suffix, _) in FORMATS.items()}
FORMAT_NAMES = tuple(FORMATS)

BucketRun = tuple[int, int, int]  # (bucket, first sequence, stop) in a length-sorted chunk
# Non-empty bucket -> (sequences, timesteps), as the manifest lists them for a shard.
BucketCounts = Mapping[int, tuple[int, int]]


class ShardFormat(Protocol):
    reads_whole: bool  # whether reading all buckets is fastest from the file's bytes in memory
    reads_spans: bool  # whether `read_spans` reads parts of a bucket (see there)

    def encode(self, out: MemoryFile, seqs: Sequences, runs: Sequence[BucketRun],
               chunk: int) -> None:
        """Write a shard holding ``seqs`` into the empty ``out``, one group per non-empty
        bucket run (the caller hashes and publishes the bytes)."""
        ...

    def read_buckets(self, path: Path, buckets: Sequence[int], counts: BucketCounts,
                     num_features: int, values: bool = True,
                     data: np.ndarray | None = None,
                     buffers: ReadBuffers | None = None) -> list[Sequences]:
        """Buckets ``buckets`` of a shard whose non-empty buckets hold ``counts``.

        Sizes declared inside the file are checked against ``counts`` (the manifest's)
        before anything is read or decoded, so a small hostile file cannot make a reader
        allocate more than the manifest says the shard holds; anything our writer does not
        make (links, external or virtual storage, compression) is refused.
        With ``values=False``, only ids and offsets are read: see `lengths_only`.
        ``data``, if given, holds the whole file's bytes, already read (to check its
        hash): formats that ``reads_whole`` return views of it, others may decode from
        it or read the file themselves, into ``buffers`` if given (the result is then
        valid until they are recycled).

        Raises ShardError naming ``path`` when the file does not hold what is expected.
        """
        ...

    def read_spans(self, path: Path, counts: BucketCounts, num_features: int,
                   spans: np.ndarray, x_out: np.ndarray, y_out: np.ndarray) -> bool:
        """Copy runs of timesteps straight from the file into the outputs.

        ``spans`` is (k, 4): run i is timesteps ``spans[i, 1]:spans[i, 2]`` of bucket
        ``spans[i, 0]``, written to ``x_out`` / ``y_out`` from row ``spans[i, 3]``. Returns
        False, having read nothing, when the format (or this file's layout) reads whole
        buckets only.
        """
        ...


def lengths_only(offsets: np.ndarray, ids: np.ndarray) -> Sequences:
    """`Sequences` carrying ids and lengths but no values: x has 0 columns, y is a view."""
    total = int(offsets[-1])
    return Sequences(np.zeros((total, 0), np.float32),
                     np.broadcast_to(np.zeros(1, np.uint8), (total,)), offsets, ids)


def get_format(name: str) -> ShardFormat:
    """The format called ``name`` (a key of `FORMATS`), its library imported on first use."""
    check_choice("format", name, FORMAT_NAMES)
    return importlib.import_module(FORMATS[name][1]).FORMAT
