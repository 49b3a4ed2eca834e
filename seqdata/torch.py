"""The PyTorch bridge: seqdata batches as tensors, for a ``DataLoader`` or a device.

``torch`` is imported on first use, not with this module (`BatchDataset` is made on first
access). Tensors share memory with the batch's numpy arrays (no copy) until they are
pinned, moved to a device or sent from a loader worker.

- `BatchDataset`: an ``IterableDataset`` of one epoch's batches as dicts of tensors. With
  ``DataLoader(data, batch_size=None, num_workers=W)`` worker ``k`` pads batches ``k, k +
  W, ...`` only, so the loader yields `Dataset.batches`' order: no duplicate, no gap.
- `loader`: that ``DataLoader``, counting the batches it hands out into the dataset, so
  that ``data.state_dict()`` resumes exactly mid-epoch with workers too.
- `pad_collate`: a collate function that pads rows of variable length (plain torch, or
  Hugging Face ``datasets`` over the Parquet shards) into the same dict of tensors.
- `to_tensors`, `prefetch_to_device`: one `Batch` as tensors; batches sent to a device ahead.

>>> import seqdata, seqdata.torch, tempfile
>>> d = tempfile.mkdtemp()
>>> _ = seqdata.build_dataset(d, seqdata.LagSumSpec(num_sequences=40), progress=False)
>>> ds = seqdata.open_dataset(d)
>>> t = seqdata.torch.to_tensors(next(ds.batches(seqdata.BatchConfig("padded", batch_size=8))))
>>> sorted(t), t["x"].dtype, t["mask"].dtype
(['ids', 'lengths', 'mask', 'x', 'y'], torch.float32, torch.bool)
>>> data = seqdata.torch.BatchDataset(d, "padded", batch_size=16, seed=1)
>>> sum(len(b["ids"]) for b in seqdata.torch.loader(data)), data.state_dict()
(40, {'epoch': 1, 'start': 0})
>>> rows = [{"x": [[0.5] * 5] * 3, "y": [1, 0, 1], "id": 7}, {"x": [[0.2] * 5], "y": [0], "id": 9}]
>>> b = seqdata.torch.pad_collate(rows)
>>> b["x"].shape, b["mask"].tolist(), b["ids"].tolist()
(torch.Size([2, 3, 5]), [[True, True, True], [True, False, False]], [7, 9])
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from seqdata.checks import check_bool, check_int
from seqdata.errors import SpecError
from seqdata.read.batch import Batch
from seqdata.read.batching import check_budget
from seqdata.read.config import BatchConfig, as_config
from seqdata.read.dataset import Dataset, open_dataset
from seqdata.read.prefetch import prefetch

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

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


def _worker() -> tuple[int, int]:
    """(id, count) of the ``DataLoader`` workers this code runs in; (0, 1) outside one."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class BatchDatasetBase:
    """One epoch of a dataset's batches as dicts of tensors (`to_tensors`), a pass.

    ``seqdata.torch.BatchDataset`` is this class made a ``torch.utils.data.IterableDataset``
    (on first access, so that importing this module does not import torch).

    Args:
        source: a dataset directory, or an open `seqdata.Dataset`.
        config: a `BatchConfig` or a mode (default "bucketed"); ``options`` replace its
            fields (``batch_size=...`` or ``max_timesteps=...``, ``seed=...``, ...).

    Use it with ``DataLoader(data, batch_size=None, num_workers=W)`` (or `loader`): worker
    ``k`` of ``W`` yields batches ``start + k, start + k + W, ...`` and pads only those,
    so the loader's in-order, round-robin fetching yields exactly the batches of
    ``Dataset.batches`` with the same config, in the same order. Each worker still reads
    every shard the epoch needs (every batch depends on the shuffle of whole windows).

    Position: ``epoch`` and ``start`` say where the next pass begins. A pass moves
    ``start`` past every batch it yields and, when it completes, moves on to the next
    epoch (``start`` 0), so `state_dict` is exact in the process that iterates. Workers
    iterate copies, made when a pass starts: with a plain ``DataLoader`` and workers the
    object in the main process does not move, so call `set_epoch` before each epoch (as
    with a ``DistributedSampler``); `loader` moves it, counting the batches it hands out.
    """

    def __init__(self, source: Dataset | str | os.PathLike[str],
                 config: BatchConfig | str | None = None, /, **options: Any) -> None:
        if isinstance(source, Dataset):
            self.dataset = source
        elif isinstance(source, str | os.PathLike):
            self.dataset = open_dataset(source)
        else:
            raise SpecError(f"source must be a dataset directory or an open seqdata.Dataset, "
                            f"got {type(source).__name__}")
        self.config = as_config("bucketed" if config is None else config, **options)
        check_budget(self.config, self.dataset.boundaries, self.dataset.spec.lengths.high)
        self.epoch, self.start = self.config.epoch, self.config.start
        self._next: int | None = None  # set by a worker's state: its next batch
        self._sizes: dict[int, int] = {}
        self._packed = False  # set in `loader`'s workers: hand out `_Packed` batches

    def __repr__(self) -> str:
        return (f"BatchDataset({str(self.dataset.root)!r}, mode={self.config.mode!r}, "
                f"epoch={self.epoch}, start={self.start})")

    def epoch_config(self, epoch: int) -> BatchConfig:
        """The `BatchConfig` of epoch ``epoch`` (from its first batch)."""
        return replace(self.config, epoch=epoch, start=0)

    def epoch_size(self, epoch: int) -> int:
        """Number of batches of epoch ``epoch`` (planned once, reading ids and lengths)."""
        if epoch not in self._sizes:
            self._sizes[epoch] = self.dataset.num_batches(self.epoch_config(epoch))
        return self._sizes[epoch]

    def __len__(self) -> int:
        """Batches the next pass yields (all workers together): those of ``epoch`` from
        ``start`` on."""
        return max(self.epoch_size(self.epoch) - self.start, 0)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker, workers = _worker()
        epoch = self.epoch
        first = self.start + worker if self._next is None else self._next
        config = replace(self.config, epoch=epoch, start=first)
        select = None if workers == 1 else (lambda k: (k - first) % workers == 0)
        index = first
        for batch in self.dataset.batches(config, select=select):
            # Moved before the batch is handed out: a state taken while it is in use
            # says it was consumed.
            index += workers
            if workers == 1:
                self.start = index
            else:
                self._next = index
            yield _Packed(batch) if self._packed else to_tensors(batch)
        self.epoch, self.start, self._next = epoch + 1, 0, None

    def set_epoch(self, epoch: int) -> None:
        """The next pass is epoch ``epoch``, from its first batch."""
        check_int("epoch", epoch, 0)
        self.epoch, self.start, self._next = int(epoch), 0, None

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "start"}``: where the next pass begins (batches ``0 .. start - 1``
        of ``epoch`` are done).

        Inside a ``DataLoader`` worker (torchdata's ``StatefulDataLoader`` asks each one),
        the state is that worker's: it adds ``next``, the next batch this worker yields,
        and ``workers``, their number; loading it resumes that worker there.
        """
        state = {"epoch": self.epoch, "start": self.start}
        worker, workers = _worker()
        if workers > 1:
            state["next"] = self.start + worker if self._next is None else self._next
            state["workers"] = workers
        return state

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from ``state`` (a `state_dict`): the next pass yields the rest of its
        epoch, exactly the batches an uninterrupted pass would have yielded after it."""
        if not isinstance(state, Mapping) or not {"epoch", "start"} <= set(state):
            raise SpecError(f"state must be a dict with 'epoch' and 'start' (from "
                            f"state_dict()), got {state!r}")
        check_int("state['epoch']", state["epoch"], 0)
        check_int("state['start']", state["start"], 0)
        following = state.get("next")
        if following is not None:
            worker, workers = _worker()
            if state.get("workers") != workers:
                raise SpecError(f"state['workers'] must be {workers} (the loader workers "
                                f"here): a worker's state resumes in that worker, got "
                                f"{state.get('workers')!r}")
            check_int("state['next']", following, state["start"])
            if (following - state["start"]) % workers != worker:
                raise SpecError(f"state['next'] must be a batch of worker {worker}: the "
                                f"state is worker {(following - state['start']) % workers}'s")
            following = int(following)
        self.epoch, self.start, self._next = int(state["epoch"]), int(state["start"]), following


@functools.cache
def _dataset_class() -> type:
    from torch.utils.data import IterableDataset

    return type("BatchDataset", (BatchDatasetBase, IterableDataset),
                {"__module__": __name__, "__qualname__": "BatchDataset",
                 "__doc__": BatchDatasetBase.__doc__})


def __getattr__(name: str) -> Any:
    if name == "BatchDataset":
        return _dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "BatchDataset"])


def _can_pin() -> bool:
    """Whether pinned memory exists here (it needs an accelerator)."""
    import torch

    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator else torch.cuda.is_available()


class _Packed:
    """A batch on its way from a `loader` worker that is not pinned: numpy arrays, which
    cross the loader's pipe as pickled bytes, made tensors in the main process.

    Tensors would each cross through a new shared-memory segment and a file descriptor
    of their own: on the 2-core VM of the benchmark that cost the workers about twice
    the CPU (a page fault for every 4 KiB of fresh shared memory) and the main process
    about twice too (a socket round trip a tensor), at 1000 sequences a batch. Pinned
    batches keep torch's way: the pinning thread then receives them, off the main thread.
    """

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def tensors(self) -> dict[str, torch.Tensor]:
        return to_tensors(self.batch)


class _WorkerInit:
    """``worker_init_fn`` of `loader`: its workers hand out `_Packed` batches (when
    ``packed``); then the caller's own ``worker_init_fn``, if any."""

    def __init__(self, then: Callable[[int], None] | None, packed: bool) -> None:
        self.then, self.packed = then, packed

    def __call__(self, worker_id: int) -> None:
        from torch.utils.data import get_worker_info

        get_worker_info().dataset._packed = self.packed
        if self.then is not None:
            self.then(worker_id)


class _Counted:
    """A ``DataLoader`` iterator that moves its dataset's position as it hands out
    batches (the workers' copies of the dataset move only their own), and unpacks them."""

    def __init__(self, batches: Iterator, dataset: BatchDatasetBase) -> None:
        self._batches, self._dataset = batches, dataset
        self._epoch, self._done = dataset.epoch, False

    def __iter__(self) -> _Counted:
        return self

    def __len__(self) -> int:
        return len(self._batches)

    def __next__(self) -> dict[str, torch.Tensor]:
        try:
            batch = next(self._batches)
        except StopIteration:
            if not self._done:
                self._done = True
                self._dataset.set_epoch(self._epoch + 1)
            raise
        self._dataset.start += 1
        return batch.tensors() if isinstance(batch, _Packed) else batch


@functools.cache
def _loader_class() -> type:
    from torch.utils.data import DataLoader

    class BatchLoader(DataLoader):
        """A ``DataLoader`` of a `BatchDataset` that counts the batches it hands out into
        the dataset's position (see `loader`)."""

        def __iter__(self):
            batches = super().__iter__()
            return batches if self.num_workers == 0 else _Counted(batches, self.dataset)

    BatchLoader.__module__, BatchLoader.__qualname__ = __name__, "BatchLoader"
    return BatchLoader


def loader(dataset: BatchDatasetBase, *, num_workers: int = 0, pin_memory: bool = False,
           **options: Any) -> DataLoader:
    """A ``DataLoader`` over ``dataset``'s batches (``batch_size=None``): a pass is the rest
    of the dataset's epoch, in `Dataset.batches`' order, split between ``num_workers``.

    Unlike a plain ``DataLoader`` with workers, it moves ``dataset``'s position as it
    hands out batches, so ``dataset.state_dict()`` between two steps resumes exactly
    there, and the next pass is the next epoch. ``pin_memory`` pins batches where there is
    an accelerator (and is ignored, without torch's warning, where there is none).
    ``options`` go to ``DataLoader`` (``prefetch_factor``, ``timeout``,
    ``multiprocessing_context``, ...); workers are started for every pass, so that
    `set_epoch` and ``load_state_dict`` reach them (no ``persistent_workers``).
    """
    if not isinstance(dataset, BatchDatasetBase):
        raise SpecError(f"dataset must be a seqdata.torch.BatchDataset, got "
                        f"{type(dataset).__name__}")
    check_int("num_workers", num_workers, 0)
    check_bool("pin_memory", pin_memory)
    for name in ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn",
                 "drop_last"):
        if name in options:
            raise SpecError(f"{name} is not a loader option: batches are cut by the "
                            f"dataset's BatchConfig")
    if options.get("persistent_workers"):
        raise SpecError("persistent_workers must be false: workers start with each pass so "
                        "that set_epoch and load_state_dict reach them")
    pin = pin_memory and _can_pin()
    init = _WorkerInit(options.pop("worker_init_fn", None), packed=not pin)
    return _loader_class()(dataset, batch_size=None, num_workers=num_workers, pin_memory=pin,
                           worker_init_fn=init, **options)


def _as_array(value: Any, dtype: type) -> np.ndarray:
    """``value`` (list, numpy array or tensor; nested lists or an object array of rows)
    as an array of ``dtype``."""
    a = np.asarray(value)
    if a.dtype == object:
        a = np.stack([np.asarray(v) for v in a]) if len(a) else np.zeros(0)
    return a.astype(dtype, copy=False)


def pad_collate(rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Right-pad rows of variable length into one batch, laid out as `BatchDataset`'s:
    ``x`` float32 (B, L, F), ``y`` uint8 (B, L) (cast with ``.long()`` for
    ``cross_entropy``), ``mask`` bool (B, L), ``lengths`` int32 (B,) and, when the rows
    have an ``id`` (or ``ids``), ``ids`` int64 (B,). Padding is 0 (``mask`` False).

    A row maps ``x`` (L, F) and optionally ``y`` (L,), as lists, numpy arrays or tensors:
    what Hugging Face ``datasets`` (any format) or pyarrow give for a row of the Parquet
    shards (``id``, ``length``, ``bucket``, ``x``, ``y``); a ``length`` must agree with
    ``x``. Use it as ``DataLoader(rows, batch_size=..., shuffle=True,
    collate_fn=pad_collate)``.
    """
    import torch

    if not isinstance(rows, Sequence) or not rows:
        raise SpecError(f"rows must be a non-empty list of rows, got {rows!r:.80}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "x" not in row:
            raise SpecError(f"rows[{i}] must be a mapping with 'x' (and 'y', 'id'), got "
                            f"{type(row).__name__}")
    xs = [_as_array(row["x"], np.float32) for row in rows]
    features = next((x.shape[1] for x in xs if x.ndim == 2), 0)
    for i, x in enumerate(xs):
        if x.ndim == 1 and not len(x):
            xs[i] = x = x.reshape(0, features)
        if x.ndim != 2 or x.shape[1] != features:
            raise SpecError(f"rows[{i}]['x'] must be (length, {features}), got shape "
                            f"{x.shape}")
    lengths = np.array([len(x) for x in xs], np.int32)
    for i, row in enumerate(rows):
        if "length" in row and int(row["length"]) != lengths[i]:
            raise SpecError(f"rows[{i}]['length'] must be the length of its x "
                            f"({lengths[i]}), got {row['length']!r}")
    width = int(lengths.max())
    mask = np.arange(width) < lengths[:, None]
    x = np.zeros((len(rows), width, features), np.float32)
    x[mask] = np.concatenate(xs)  # row by row, step by step: the order of x[mask]
    out = {"x": x}
    if "y" in rows[0]:
        ys = [_as_array(row.get("y", ()), np.int64) for row in rows]
        for i, y in enumerate(ys):
            if y.shape != (lengths[i],):
                raise SpecError(f"rows[{i}]['y'] must be ({lengths[i]},) like its x, got "
                                f"shape {y.shape}")
        flat = np.concatenate(ys)
        if flat.size and (flat.min() < 0 or flat.max() > 255):
            raise SpecError(f"rows' y must be labels in 0..255 (uint8), got "
                            f"{flat.min()}..{flat.max()}")
        out["y"] = np.zeros((len(rows), width), np.uint8)
        out["y"][mask] = flat
    out["mask"], out["lengths"] = mask, lengths
    key = next((k for k in ("id", "ids") if k in rows[0]), None)
    if key is not None:
        out["ids"] = np.array([int(row[key]) for row in rows], np.int64)
    return {name: torch.from_numpy(a) for name, a in out.items()}
