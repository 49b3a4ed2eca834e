"""The PyTorch bridge: seqdata batches as tensors, for a ``DataLoader`` or a device.

``torch`` is imported on first use, not with this module (`BatchDataset` is made on first
access). Tensors share memory with the batch's numpy arrays (no copy) until they are
pinned, moved to a device or sent from a loader worker.

- `BatchDataset`: an ``IterableDataset`` of one epoch's batches as dicts of tensors. With
  ``DataLoader(data, batch_size=None, num_workers=W)`` worker ``k`` pads batches ``k, k +
  W, ...`` only, so the loader yields `Dataset.batches`' order: no duplicate, no gap.
- `loader`: that ``DataLoader``, counting the batches it hands out into the dataset, so
  that ``data.state_dict()`` resumes exactly mid-epoch with workers too; its workers
  hand batches over through shared memory, and may persist from epoch to epoch.
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
import itertools
import mmap
import multiprocessing
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from seqdata.checks import check_bool, check_int
from seqdata.errors import SpecError
from seqdata.read.batch import Batch, new_batch
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
    ``Dataset.batches`` with the same config, in the same order. Each worker plans the
    whole epoch (every batch depends on the shuffle of whole windows) from lengths and
    ids, and reads only its own batches' rows (`seqdata.read.located`: byte ranges of
    the shards).

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
        self._packed = False  # set in `loader`'s workers: hand out `_Shared`/`_Packed`
        self._rings: list[_Ring] | None = None  # set by `loader` while its workers fork
        self._ring: _Ring | None = None  # a `loader` worker's own ring
        self._prepare = False  # set in persistent `loader` workers: see `_Ahead`
        self._ahead: _Ahead | None = None

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
        ahead, self._ahead = self._ahead, None
        batches = ahead.take() if ahead is not None and ahead.key == (epoch, first, workers) \
            else self._batches(epoch, first, workers)
        if ahead is not None and ahead.key != (epoch, first, workers):
            ahead.close()
        index = first
        for batch in batches:
            # Moved before the batch is handed out: a state taken while it is in use
            # says it was consumed.
            index += workers
            if workers == 1:
                self.start = index
            else:
                self._next = index
            yield self._send(batch) if self._packed else to_tensors(batch)
        self.epoch, self.start, self._next = epoch + 1, 0, None
        if self._prepare:  # a persistent `loader` worker: its next pass is surely this one
            key = (epoch + 1, worker, workers)
            self._ahead = _Ahead(key, self._batches(*key))

    def _batches(self, epoch: int, first: int, workers: int) -> Iterator[Batch]:
        """The numpy batches ``first, first + workers, ...`` of epoch ``epoch``."""
        config = replace(self.config, epoch=epoch, start=first)
        select = None if workers == 1 else (lambda k: (k - first) % workers == 0)
        memory = None if self._ring is None else self._ring.reserve
        return self.dataset.batches(config, select=select, memory=memory)

    def _send(self, batch: Batch) -> _Shared | _Packed:
        """A `loader` worker's batch as it crosses to the main process: through the
        worker's shared-memory ring when it has one with room, else through the pipe."""
        shared = None if self._ring is None else self._ring.put(batch)
        return _Packed(batch) if shared is None else shared

    def __getstate__(self) -> dict[str, Any]:
        # Shared memory crosses to workers by fork only (`loader`); a pickled copy, a
        # spawned worker's included, sends its batches through the pipe.
        return {**self.__dict__, "_rings": None, "_ring": None, "_prepare": False,
                "_ahead": None}

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


class _Ahead:
    """The start of a persistent worker's next pass, made on a thread as soon as its
    share of a pass is done: reading the first window of the next epoch (the longest
    wait of a pass: 40-200 ms here) overlaps the last batches of this one and whatever
    the main process does in between, instead of stalling the next epoch's first step.

    `loader` starts a new worker wherever a pass would begin elsewhere, so the guess
    (``key``: epoch, first batch, workers) holds; a pass that begins elsewhere anyway
    closes it and starts afresh. An error is raised where the batch would have been.
    """

    _END = object()

    def __init__(self, key: tuple[int, int, int], batches: Iterator[Batch]) -> None:
        self.key, self._batches = key, batches
        self._first: Any = self._END
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="seqdata-next-pass",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._first = next(self._batches, self._END)
        except BaseException as e:  # raised to the pass that takes it
            self._error = e

    def take(self) -> Iterator[Batch]:
        """The pass's batches: the one made ahead, then the rest."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return itertools.chain(() if self._first is self._END else (self._first,),
                               self._batches)

    def close(self) -> None:
        self._thread.join()
        self._batches.close()


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
    """A batch on its way from a `loader` worker through the loader's pipe: numpy arrays,
    pickled, made tensors in the main process (pinned ones on the pinning thread).

    What a batch takes when it has no room in the worker's `_Ring` (or no ring: workers
    not forked). Tensors would each cross through a new shared-memory segment and a
    file descriptor of their own: on the 2-core VM of the benchmark that cost the
    workers about twice the CPU (a page fault for every 4 KiB of fresh shared memory)
    and the main process about twice too (a socket round trip a tensor).
    """

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def tensors(self) -> dict[str, torch.Tensor]:
        return to_tensors(self.batch)

    def pin_memory(self, device: Any = None) -> dict[str, torch.Tensor]:
        """Called by the ``DataLoader``'s pinning thread."""
        return to_tensors(self.batch, pin_memory=True)


# A batch's arrays in a `_Ring`, in this order, each at a multiple of _ALIGN bytes.
_RING_FIELDS = (("x", np.float32), ("y", np.uint8), ("mask", np.bool_),
                ("lengths", np.int32), ("ids", np.int64))
_ALIGN = 64
_SLOTS = 256  # batches a ring holds at most (a slot of its header each)
_RING_LIMIT = 1 << 30  # a ring's size at most; a larger batch goes through the pipe
# Batches each worker prepares ahead by default: as many as fit in _PREFETCH_BYTES, 2 to
# _PREFETCH_MOST. Both workers plan each window at the same moment (10-30 ms here), and
# torch's default of 2 leaves the main process waiting at every window.
_PREFETCH_BYTES, _PREFETCH_MOST = 64 << 20, 8
_RINGS: dict[int, list[_Ring]] = {}  # main process: the rings of each loader iterator
_TOKENS = itertools.count()


def _shapes(rows: int, width: int, features: int) -> tuple[tuple[int, ...], ...]:
    return (rows, width, features), (rows, width), (rows, width), (rows,), (rows,)


def _layout(rows: int, width: int, features: int) -> tuple[list[int], int]:
    """Where each array of a (rows, width, features) batch starts in a ring, and the
    bytes the batch takes."""
    sizes = (rows * width * features * 4, rows * width, rows * width, rows * 4, rows * 8)
    starts, size = [], 0
    for nbytes in sizes:
        starts.append(size)
        size += -(-nbytes // _ALIGN) * _ALIGN
    return starts, size


def _largest_batch(data: BatchDatasetBase) -> int:
    """Bytes in a ring of the largest batch ``data`` can make."""
    cfg, ds = data.config, data.dataset
    width = max(ds.boundaries[-1], ds.spec.lengths.high)
    if cfg.size is not None:
        rows, cells = cfg.size, cfg.size * width
    else:  # a budget: rows x width <= max_timesteps (fill rows included)
        rows = cells = cfg.max_timesteps
    if cfg.num_ranks > 1:  # a rank's part: rows / ranks rounded up, as wide as the whole
        rows = -(-rows // cfg.num_ranks)
        cells = min(cells, rows * width, -(-cells // cfg.num_ranks) + width)
    return cells * (4 * ds.num_features + 2) + rows * 12 + len(_RING_FIELDS) * _ALIGN


class _Ring:
    """Shared memory through which one `loader` worker hands its batches to the main
    process: a mapping made before the worker forks, so that both map the same pages,
    faulted in once rather than for every batch, and a batch crosses with no copy.

    The worker copies each padded batch in after the previous one (back at the start
    when it does not fit before the end) and sends its place (`_Shared`) through the
    pipe; in the main process the batch's tensors are views of the ring, and when the
    last of them is freed its slot in the ring's header says so (`release`). A worker
    writes only where no batch is still in use: with no such room (a consumer keeping
    its batches), `put` returns None and the batch goes through the pipe (`_Packed`):
    nothing waits, and no tensor ever changes under its holder. Sized for the loader's
    prefetched batches, the ring has room when each batch is dropped after its step.
    """

    def __init__(self, token: int, worker: int, size: int) -> None:
        self.token, self.worker, self.size = token, worker, size
        self.memory = mmap.mmap(-1, 8 * _SLOTS + size)  # anonymous, MAP_SHARED: kept by fork
        self.bytes = np.frombuffer(self.memory, np.uint8)  # (also keeps the mapping alive)
        # Slot n % _SLOTS holds n + 1 once batch n is released (by the main process).
        self.released = self.bytes[:8 * _SLOTS].view(np.int64)
        self.address = self.bytes.ctypes.data + 8 * _SLOTS
        # The worker's side: batches sent, where the next goes, those maybe in use.
        self._sent, self._at = 0, 0
        self._held: list[tuple[int, int, int]] = []  # (number, start, stop)
        self._reserved: tuple[int, int] | None = None  # (start, size) of `reserve`'s room

    def view(self, start: int, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return np.frombuffer(self.memory, dtype, count, 8 * _SLOTS + start).reshape(shape)

    def release(self, number: int) -> None:
        """Main process: batch ``number`` is no longer in use."""
        self.released[number % _SLOTS] = number + 1

    def _place(self, size: int) -> int | None:
        """Where ``size`` bytes fit over no batch in use: from where the last batch
        ended, past what is in the way, or from the start (None: nowhere)."""
        self._held = [h for h in self._held if self.released[h[0] % _SLOTS] != h[0] + 1]
        if any((number - self._sent) % _SLOTS == 0 for number, _, _ in self._held):
            return None  # the next batch's slot still belongs to one in use
        start = self._at
        for _ in range(len(self._held) + 2):
            if start + size > self.size:
                start = 0
            stop = start + size
            if stop > self.size:
                return None
            blocking = [b for _, a, b in self._held if a < stop and start < b]
            if not blocking:
                return start
            start = max(blocking)
        return None

    def reserve(self, rows: int, width: int, features: int) -> Batch:
        """Worker: a `BatchMemory` (see `seqdata.read.batch`): room in the ring for the
        next batch, which is then padded straight into it (`put` sends it without a
        copy); new arrays when the ring has no room."""
        starts, size = _layout(rows, width, features)
        start = self._place(size)
        if start is None:
            self._reserved = None
            return new_batch(rows, width, features)
        self._reserved = start, size
        return Batch(*(self.view(start + at, dtype, shape) for (_, dtype), shape, at
                       in zip(_RING_FIELDS, _shapes(rows, width, features), starts,
                              strict=True)))

    def put(self, batch: Batch) -> _Shared | None:
        """Worker: ``batch`` in the ring (padded there through `reserve`, or copied in),
        or None when it has no room there."""
        arrays = [getattr(batch, name) for name, _ in _RING_FIELDS]
        if arrays[0].ndim != 3:
            return None
        shape = arrays[0].shape
        if any(a.dtype != dtype or a.shape != s for a, (_, dtype), s
               in zip(arrays, _RING_FIELDS, _shapes(*shape), strict=True)):
            return None
        starts, size = _layout(*shape)
        reserved, self._reserved = self._reserved, None
        if reserved is not None and reserved[1] == size and \
                arrays[0].ctypes.data == self.address + reserved[0] + starts[0]:
            start = reserved[0]
        else:
            start = self._place(size)
            if start is None:
                return None
            for array, at in zip(arrays, starts, strict=True):
                np.copyto(self.view(start + at, array.dtype, array.shape), array)
        number, self._sent, self._at = self._sent, self._sent + 1, start + size
        self._held.append((number, start, start + size))
        return _Shared(self.token, self.worker, number, start, shape)


class _Lease:
    """The memory of one batch in a `_Ring`, as numpy sees it: its arrays (and the
    tensors made from them) keep it alive, and its end releases the batch's place."""

    def __init__(self, ring: _Ring, number: int, start: int, size: int) -> None:
        self.__array_interface__ = {"data": (ring.address + start, False), "shape": (size,),
                                    "typestr": "|u1", "version": 3}
        weakref.finalize(self, ring.release, number)  # holds the ring (and its mapping)


class _Shared:
    """A batch waiting in a worker's `_Ring`: which ring, which batch, where, its shape."""

    __slots__ = ("number", "shape", "start", "token", "worker")

    def __init__(self, token: int, worker: int, number: int, start: int,
                 shape: tuple[int, int, int]) -> None:
        self.token, self.worker, self.number = token, worker, number
        self.start, self.shape = start, shape

    def __getstate__(self) -> tuple:
        return self.token, self.worker, self.number, self.start, self.shape

    def __setstate__(self, state: tuple) -> None:
        self.token, self.worker, self.number, self.start, self.shape = state

    def tensors(self) -> dict[str, torch.Tensor]:
        """Main process: the batch's tensors, views of the ring (no copy); the ring
        reuses their memory once they are all freed."""
        import torch

        ring = _RINGS[self.token][self.worker]
        starts, size = _layout(*self.shape)
        memory = np.asarray(_Lease(ring, self.number, self.start, size))
        stops = [*starts[1:], size]
        return {name: torch.from_numpy(memory[a:e].view(dtype)[:int(np.prod(shape))]
                                       .reshape(shape))
                for (name, dtype), shape, a, e
                in zip(_RING_FIELDS, _shapes(*self.shape), starts, stops, strict=True)}

    def pin_memory(self, device: Any = None) -> dict[str, torch.Tensor]:
        """Called by the ``DataLoader``'s pinning thread: the batch copied into pinned
        tensors, and its place in the ring released at once."""
        import torch

        ring = _RINGS[self.token][self.worker]
        starts, _ = _layout(*self.shape)
        out = {}
        for (name, dtype), shape, at in zip(_RING_FIELDS, _shapes(*self.shape), starts,
                                            strict=True):
            source = torch.from_numpy(ring.view(self.start + at, dtype, shape))
            out[name] = torch.empty(shape, dtype=source.dtype, pin_memory=True)
            out[name].copy_(source)
        ring.release(self.number)
        return out


def _forks(loader: DataLoader) -> bool:
    """Whether ``loader``'s workers start by fork (and so keep memory mapped before)."""
    context = loader.multiprocessing_context
    return (context or multiprocessing).get_start_method() == "fork"


class _WorkerInit:
    """``worker_init_fn`` of `loader`: its workers hand out `_Shared` or `_Packed`
    batches, not tensors; then the caller's own ``worker_init_fn``, if any."""

    def __init__(self, then: Callable[[int], None] | None, persistent: bool) -> None:
        self.then, self.persistent = then, persistent

    def __call__(self, worker_id: int) -> None:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        data = info.dataset
        data._packed, data._prepare = True, self.persistent
        if data.dataset.format == "parquet":  # pyarrow decodes on threads: share the cores
            import pyarrow

            pyarrow.set_cpu_count(max((os.cpu_count() or 1) // info.num_workers, 1))
        if data._rings is not None:
            data._ring, data._rings = data._rings[worker_id], None
        if self.then is not None:
            self.then(worker_id)


class _Counted:
    """A ``DataLoader`` iterator that moves its dataset's position as it hands out
    batches (the workers' copies of the dataset move only their own), and unpacks them."""

    def __init__(self, batches: Iterator, dataset: BatchDatasetBase, loader: Any) -> None:
        self._batches, self._dataset, self._loader = batches, dataset, loader
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
                # Every worker finished its share: their copies are at the next epoch too.
                self._loader._workers_at = (self._epoch + 1, 0)
            raise
        self._dataset.start += 1
        return batch.tensors() if isinstance(batch, _Shared | _Packed) else batch


@functools.cache
def _loader_class() -> type:
    from torch.utils.data import DataLoader

    class BatchLoader(DataLoader):
        """A ``DataLoader`` of a `BatchDataset` that counts the batches it hands out into
        the dataset's position (see `loader`)."""

        _workers_at: tuple[int, int] | None = None  # where persistent workers go on

        def __iter__(self):
            data = self.dataset
            if self._IterableDataset_len_called is not None:
                # A pass checks what it yields against the last len(); this pass's own.
                self._IterableDataset_len_called = len(data)
            if self.num_workers == 0:
                return super().__iter__()
            if self._iterator is not None and (data.epoch, data.start) != self._workers_at:
                # Persistent workers go on from where their last pass ended: after a
                # partial pass, set_epoch or load_state_dict, new ones start from here.
                self._iterator._shutdown_workers()
                self._iterator = None
            self._workers_at = None
            return _Counted(super().__iter__(), data, self)

        def _get_iterator(self):
            """New workers: shards checked here first (each worker would check every
            one), and with fork a ring for each."""
            if self.num_workers == 0:
                return super()._get_iterator()
            data = self.dataset
            data.dataset.check_unchecked()
            rings = None
            if _forks(self):
                size = min(_largest_batch(data) * (self.prefetch_factor + 3), _RING_LIMIT)
                token = next(_TOKENS)
                rings = _RINGS[token] = [_Ring(token, k, size) for k in range(self.num_workers)]
                data._rings = rings
            try:
                iterator = super()._get_iterator()
            except BaseException:
                if rings is not None:
                    del _RINGS[token]
                raise
            finally:
                data._rings = None
            if rings is not None:
                weakref.finalize(iterator, _RINGS.pop, token, None)
            return iterator

    BatchLoader.__module__, BatchLoader.__qualname__ = __name__, "BatchLoader"
    return BatchLoader


def loader(dataset: BatchDatasetBase, *, num_workers: int = 0, pin_memory: bool = False,
           persistent_workers: bool = False, **options: Any) -> DataLoader:
    """A ``DataLoader`` over ``dataset``'s batches (``batch_size=None``): a pass is the rest
    of the dataset's epoch, in `Dataset.batches`' order, split between ``num_workers``.

    Unlike a plain ``DataLoader`` with workers, it moves ``dataset``'s position as it
    hands out batches, so ``dataset.state_dict()`` between two steps resumes exactly
    there, and the next pass is the next epoch. ``pin_memory`` pins batches where there is
    an accelerator (and is ignored, without torch's warning, where there is none).
    ``options`` go to ``DataLoader`` (``prefetch_factor``, ``timeout``,
    ``multiprocessing_context``, ...).

    Workers: the shards are checked (`Dataset.check_unchecked`) before they start, so
    that no worker checks them again. Forked workers hand their batches over through
    shared memory of their own, made once for their lifetime (see `_Ring`); spawned
    ones through the loader's pipe. Each prepares up to ``prefetch_factor`` batches
    ahead: by default as many as 64 MiB of the largest batch hold, 2 to 8 (torch's 2
    leaves the main process waiting whenever the workers plan a window). Parquet
    workers decode (a shard's first read, or a file of another writer's layout) on
    ``cpu_count // num_workers`` pyarrow threads.

    Each worker plans the whole epoch from lengths and ids, and reads only its own
    batches' rows (`seqdata.read.located`): byte ranges of the shards (of HDF5 datasets,
    of Parquet pages).

    With ``persistent_workers`` the workers start once: from one complete pass they go
    on to the next epoch, and start reading it as soon as their share of the pass is
    done (`_Ahead`). A pass that starts anywhere else (after a partial pass,
    `set_epoch` or ``load_state_dict``) starts new workers there, so the order is
    always that of `Dataset.batches`.
    """
    if not isinstance(dataset, BatchDatasetBase):
        raise SpecError(f"dataset must be a seqdata.torch.BatchDataset, got "
                        f"{type(dataset).__name__}")
    check_int("num_workers", num_workers, 0)
    check_bool("pin_memory", pin_memory)
    check_bool("persistent_workers", persistent_workers)
    for name in ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn",
                 "drop_last"):
        if name in options:
            raise SpecError(f"{name} is not a loader option: batches are cut by the "
                            f"dataset's BatchConfig")
    if not options.get("in_order", True):
        raise SpecError("in_order must be true: the loader yields Dataset.batches' order")
    if options.pop("decode_once", None) is not None:
        warnings.warn("loader(decode_once=...) has no effect any more: workers read their "
                      "rows straight from Parquet pages; drop the argument",
                      DeprecationWarning, stacklevel=2)
    if persistent_workers and not num_workers:
        raise SpecError("persistent_workers needs num_workers >= 1")
    if num_workers and options.get("prefetch_factor") is None:
        largest = _largest_batch(dataset)
        options["prefetch_factor"] = min(max(_PREFETCH_BYTES // largest, 2), _PREFETCH_MOST)
    init = _WorkerInit(options.pop("worker_init_fn", None), persistent_workers)
    return _loader_class()(dataset, batch_size=None, num_workers=num_workers,
                           pin_memory=pin_memory and _can_pin(),
                           persistent_workers=persistent_workers, worker_init_fn=init,
                           **options)


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
