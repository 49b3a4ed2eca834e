"""The JAX bridge: seqdata batches as ``jax.Array`` dicts, put on a device ahead of use.

``jax`` is imported on first use, not with this module. Bucketed batches change shape
from batch to batch, and a jitted step compiles once per shape: `BatchConfig`'s
``pad_to_bucket`` keeps the shapes to one per bucket (and per short last batch).

>>> import seqdata, seqdata.jax, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = seqdata.build_dataset(d, seqdata.LagSumSpec(num_sequences=40), progress=False)
>>> ds = seqdata.open_dataset(d)
>>> a = seqdata.jax.to_arrays(next(ds.batches(seqdata.BatchConfig("padded", batch_size=8))))
>>> sorted(a), str(a["x"].dtype), str(a["mask"].dtype)
(['ids', 'lengths', 'mask', 'x', 'y'], 'float32', 'bool')
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from seqdata.read.batch import Batch
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
