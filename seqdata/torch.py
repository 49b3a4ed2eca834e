"""The PyTorch bridge: seqdata batches as tensors, moved to a device ahead of use.

``torch`` is imported on first use, not with this module. Tensors share memory with the
batch's numpy arrays (no copy) until they are pinned or moved to a device.

>>> import seqdata, seqdata.torch, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = seqdata.build_dataset(d, seqdata.LagSumSpec(num_sequences=40), progress=False)
>>> ds = seqdata.open_dataset(d)
>>> t = seqdata.torch.to_tensors(next(ds.batches(seqdata.BatchConfig("padded", batch_size=8))))
>>> sorted(t), t["x"].dtype, t["mask"].dtype
(['ids', 'lengths', 'mask', 'x', 'y'], torch.float32, torch.bool)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from seqdata.read.batch import Batch
from seqdata.read.prefetch import prefetch

if TYPE_CHECKING:
    import torch

FIELDS = ("x", "y", "mask", "lengths", "ids")


def to_tensors(batch: Batch, device: torch.device | str | None = None, *,
               pin_memory: bool = False) -> dict[str, torch.Tensor]:
    """``x`` float32 (B, L, F), ``y`` uint8 (B, L), ``mask`` bool (B, L), ``lengths`` int32
    (B,), ``ids`` int64 (B,) as tensors; with ``device``, moved there (asynchronously from
    pinned memory when ``pin_memory``)."""
    import torch

    out = {}
    for name in FIELDS:
        tensor = torch.from_numpy(getattr(batch, name))
        if pin_memory:
            tensor = tensor.pin_memory()
        if device is not None:
            tensor = tensor.to(device, non_blocking=pin_memory)
        out[name] = tensor
    return out


def prefetch_to_device(batches: Iterable[Batch], device: torch.device | str, *,
                       depth: int = 4) -> Iterator[dict[str, torch.Tensor]]:
    """`to_tensors` of each batch on ``device``, made on a loader thread up to ``depth``
    batches ahead (`seqdata.read.prefetch.prefetch`).

    On a CUDA device the tensors go through pinned memory, so copies overlap compute.
    An error of the loader is raised here, at the batch where it happened; stopping the
    iteration early stops the loader.
    """
    import torch

    device = torch.device(device)
    pin = device.type == "cuda"
    return prefetch(batches, lambda b: to_tensors(b, device, pin_memory=pin), depth=depth,
                    name="seqdata-torch-prefetch")
