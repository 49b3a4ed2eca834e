"""The JAX bridge: seqdata batches as ``jax.Array`` dicts, put on a device ahead of use.

``jax`` is imported on first use, not with this module. A jitted step compiles once per
input shape, and bucketed batches change shape from batch to batch. `batches` therefore
uses `BatchConfig`'s ``static_shapes`` by default: each bucket's batches share one shape
(rows padded to the bucket's upper bound; a bucket's short last batch filled with fully
masked rows whose id is -1), so an epoch compiles a step at most once per bucket, and
padded mode once. ``pad_to_bucket`` alone leaves each short last batch a shape of its own.
For numpy batches of the same shapes, use ``Dataset.batches(static_shapes=True)``.

>>> import seqdata, seqdata.jax, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = seqdata.build_dataset(d, seqdata.LagSumSpec(num_sequences=40), progress=False)
>>> ds = seqdata.open_dataset(d)
>>> a = seqdata.jax.to_arrays(next(ds.batches(seqdata.BatchConfig("padded", batch_size=8))))
>>> sorted(a), str(a["x"].dtype), str(a["mask"].dtype)
(['ids', 'lengths', 'mask', 'x', 'y'], 'float32', 'bool')
>>> shapes = {a["x"].shape for a in seqdata.jax.batches(ds, "padded", batch_size=16)}
>>> len(shapes)  # 40 sequences: 16 + 16 + 8 real rows and 8 fill rows, one shape
1
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from os import PathLike
from typing import Any

from seqdata.read.batch import Batch
from seqdata.read.config import BatchConfig, as_config
from seqdata.read.dataset import Dataset, open_dataset
from seqdata.read.prefetch import prefetch

DEVICE_FIELDS = ("x", "y", "mask", "lengths")


def to_arrays(batch: Batch, device: Any = None) -> dict[str, Any]:
    """``x`` float32 (B, L, F), ``y`` uint8 (B, L), ``mask`` bool (B, L) and ``lengths``
    int32 (B,) as ``jax.Array`` on ``device`` (default: JAX's default device); ``ids``
    stays the batch's int64 numpy array (JAX narrows int64 to int32 unless
    ``jax_enable_x64`` is set, and ids go past 2**31).
    """
    import jax

    out: dict[str, Any] = {name: jax.device_put(getattr(batch, name), device)
                           for name in DEVICE_FIELDS}
    out["ids"] = batch.ids
    return out


def prefetch_to_device(batches: Iterable[Batch], device: Any = None, *,
                       depth: int = 2) -> Iterator[dict[str, Any]]:
    """`to_arrays` of each batch, transferred on a loader thread up to ``depth`` batches
    ahead, so that the next batch is on the device while this one is used."""
    return prefetch(batches, lambda b: to_arrays(b, device), depth=depth,
                    name="seqdata-jax-prefetch")


def batches(source: Dataset | str | PathLike, config: BatchConfig | str | None = None, /, *,
            device: Any = None, depth: int = 2, **options: Any) -> Iterator[dict[str, Any]]:
    """One epoch of ``source`` (a `Dataset` or a dataset directory) as `to_arrays` dicts
    on ``device``, prefetched ``depth`` batches ahead: what a jitted step wants.

    ``config`` and ``options`` are those of `Dataset.batches`, except that
    ``static_shapes`` defaults to True here (unless ``same_length`` is asked for); a
    `BatchConfig` passed as ``config`` is used as it is (``options`` replace its fields).
    Fill rows have ``mask`` all False, so a masked loss ignores them.
    """
    ds = source if isinstance(source, Dataset) else open_dataset(source)
    if not isinstance(config, BatchConfig):
        options.setdefault("static_shapes", not options.get("same_length", False))
    cfg = as_config("bucketed" if config is None else config, **options)
    return prefetch_to_device(ds.batches(cfg), device, depth=depth)
