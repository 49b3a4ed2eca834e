"""HDF5 shards: one group per non-empty bucket holding flat, contiguous arrays.

Layout (see docs/FORMAT.md): root attributes ``seqdata_format_version``, ``chunk``,
``num_features``; groups ``bucket_0003`` with datasets ``x`` float32 (T, F), ``y`` uint8
(T,), ``offsets`` int64 (n + 1,), ``ids`` int64 (n,). Datasets are contiguous and
uncompressed, so a bucket is read with a few large reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from seqdata.errors import ShardError
from seqdata.formats import BucketRun, lengths_only
from seqdata.memfile import MemoryFile
from seqdata.sequences import Sequences

SHARD_VERSION = 1
FIELDS = {"x": np.float32, "y": np.uint8, "offsets": np.int64, "ids": np.int64}


def group_name(bucket: int) -> str:
    return f"bucket_{bucket:04d}"


class Hdf5Format:
    name = "hdf5"
    suffix = ".h5"

    def encode(self, out: MemoryFile, seqs: Sequences, runs: Sequence[BucketRun],
               chunk: int) -> None:
        # HDF5 writes into memory through h5py's file-object driver; the caller writes the
        # image to disk with Python, where a full disk is a clean ENOSPC (HDF5's own file
        # driver crashes the process with SIGSEGV on it).
        # track_times=False keeps the bytes reproducible (no creation times in headers).
        # Datasets are made with the low-level API (what h5py's create_dataset does, less
        # its ~80 us of Python per dataset): the same calls, so the same bytes.
        gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        gcpl.set_obj_track_times(False)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_obj_track_times(False)
        with h5py.File(out, "w") as f:
            f.attrs["seqdata_format_version"] = SHARD_VERSION
            f.attrs["chunk"] = chunk
            f.attrs["num_features"] = seqs.x.shape[1]
            for bucket, start, stop in runs:
                part = seqs.slice(start, stop)
                gid = h5py.h5g.create(f.id, group_name(bucket).encode(), gcpl=gcpl)
                for field, value in (("x", part.x), ("y", part.y), ("offsets", part.offsets),
                                     ("ids", part.ids)):
                    value = np.ascontiguousarray(value)
                    dsid = h5py.h5d.create(gid, field.encode(), h5py.h5t.py_create(value.dtype),
                                           h5py.h5s.create_simple(value.shape), dcpl=dcpl)
                    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, value)

    def read_buckets(self, path: Path, buckets: Sequence[int], present: Sequence[int],
                     num_features: int, values: bool = True) -> list[Sequences]:
        try:
            with h5py.File(path, "r") as f:
                found = sorted(k for k in f if k.startswith("bucket_"))
                if found != [group_name(b) for b in present]:
                    raise ShardError(f"shard {path} holds groups {found}, the manifest "
                                     f"expects {[group_name(b) for b in present]}")
                return [self._read_group(f, b, path, num_features, values) if b in present
                        else Sequences.empty(num_features) for b in buckets]
        except ShardError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
            raise ShardError(f"shard {path} is not a readable seqdata HDF5 shard: {e}") from None

    @staticmethod
    def _read_group(f: h5py.File, bucket: int, path: Path, num_features: int,
                    values: bool) -> Sequences:
        group = f[group_name(bucket)]
        datasets = {}
        for field, dtype in FIELDS.items():
            ds = group.get(field)
            if not isinstance(ds, h5py.Dataset) or ds.dtype != np.dtype(dtype):
                found = "missing" if ds is None else getattr(ds, "dtype", type(ds).__name__)
                raise ShardError(f"shard {path} {group_name(bucket)}/{field}: expected "
                                 f"{np.dtype(dtype)} data, found {found}")
            datasets[field] = ds
        offsets, ids = datasets["offsets"][()], datasets["ids"][()]
        total = datasets["y"].shape[0] if datasets["y"].ndim == 1 else -1
        if (datasets["x"].shape != (total, num_features) or offsets.shape != (len(ids) + 1,)
                or offsets[0] != 0 or offsets[-1] != total or np.any(np.diff(offsets) < 0)):
            raise ShardError(f"shard {path} {group_name(bucket)}: inconsistent shapes "
                             f"x{datasets['x'].shape} y{datasets['y'].shape} "
                             f"offsets{offsets.shape} ids{ids.shape}")
        if not values:
            return lengths_only(offsets, ids)
        return Sequences(datasets["x"][()], datasets["y"][()], offsets, ids)
