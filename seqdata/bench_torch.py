"""The GPU check: the seed's LSTM in PyTorch trained from our shards vs from device memory.

    python -m seqdata.bench_torch [--data DIR] [--batch-sizes 1000,8192] [--steps N]
                                  [--device cuda] [--json PATH]

The seed's sizes (LSTM 32 -> LSTM 8 -> Dense 2 per timestep) as ``torch.nn.LSTM`` layers,
which run cuDNN's kernels on an NVIDIA GPU. Each batch size is trained twice for the same
number of steps on the same batches: once fed by a loader thread that streams
``Dataset.batches`` (bucketed) from the shards into pinned memory and onto the device,
once from batches that are already on the device. Rates are real timesteps per second;
the ratio says whether the input side keeps up (target: >= 90%). Without ``--data``, a
default dataset is generated into a temporary directory. It runs on the CPU too (slowly).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqdata.build import build_dataset
from seqdata.dataset import Dataset, open_dataset
from seqdata.spec import LagSumSpec

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x, y, mask on the device


class SeedLSTM(nn.Module):
    """LSTM(32) -> LSTM(8) -> Linear(2) at every timestep (PyTorch keeps two bias vectors
    per LSTM gate where Keras keeps one: 6,354 parameters against Keras' 6,194)."""

    def __init__(self, num_features: int, units: tuple[int, int] = (32, 8)) -> None:
        super().__init__()
        self.first = nn.LSTM(num_features, units[0], batch_first=True)
        self.second = nn.LSTM(units[0], units[1], batch_first=True)
        self.head = nn.Linear(units[1], 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second(self.first(x)[0])[0])


def masked_loss(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over real timesteps only (padding is at the end, so it cannot leak)."""
    per_step = nn.functional.cross_entropy(logits.reshape(-1, 2), y.reshape(-1).long(),
                                           reduction="none")
    weights = mask.reshape(-1).to(per_step.dtype)
    return (per_step * weights).sum() / weights.sum()


def to_device(x: np.ndarray, y: np.ndarray, mask: np.ndarray, device: torch.device) -> Tensors:
    pin = device.type == "cuda"
    out = []
    for a in (x, y, mask):
        t = torch.from_numpy(a)
        out.append(t.pin_memory().to(device, non_blocking=True) if pin else t)
    return out[0], out[1], out[2]


def stream(ds: Dataset, batch_size: int, device: torch.device, steps: int,
           depth: int = 4) -> Iterator[Tensors]:
    """``steps`` batches from the shards, epoch after epoch, made on a loader thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def load() -> None:
        try:
            made, epoch = 0, 0
            while made < steps and not stop.is_set():
                for b in ds.batches("bucketed", batch_size=batch_size, epoch=epoch):
                    q.put(to_device(b.x, b.y, b.mask, device))
                    made += 1
                    if made == steps or stop.is_set():
                        break
                epoch += 1
        except BaseException as e:  # handed to the training loop, which re-raises it
            q.put(e)
        q.put(None)

    thread = threading.Thread(target=load, name="bench-loader", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a loader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.1)


def train(batches: Iterator[Tensors] | list[Tensors], model: nn.Module,
          device: torch.device) -> tuple[float, int]:
    """(seconds, steps) of training on ``batches``, until the device is done."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = 0
    start = time.perf_counter()
    for x, y, mask in batches:
        opt.zero_grad(set_to_none=True)
        masked_loss(model(x), y, mask).backward()
        opt.step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, steps


def bench_batch_size(ds: Dataset, batch_size: int, steps: int, warmup: int,
                     device: torch.device) -> dict:
    """From shards vs from device memory, the same ``steps`` batches, after a warm-up."""
    torch.manual_seed(0)
    model = SeedLSTM(ds.num_features).to(device)
    train(stream(ds, batch_size, device, warmup), model, device)  # cuDNN plans, allocator
    resident = list(stream(ds, batch_size, device, steps))
    real = int(sum(int(m.sum()) for _, _, m in resident))
    shards_s, n = train(stream(ds, batch_size, device, steps), model, device)
    memory_s, _ = train(resident, model, device)
    return {"batch_size": batch_size, "steps": n, "timesteps": real,
            "from_shards_per_s": real / shards_s, "in_memory_per_s": real / memory_s,
            "ratio": memory_s / shards_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqdata-bench-torch",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset directory (default: generate one)")
    parser.add_argument("--sequences", type=int, default=200_000,
                        help="sequences to generate without --data")
    parser.add_argument("--batch-sizes", default="1000,8192")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    with tempfile.TemporaryDirectory(prefix="seqdata-bench-torch-") as scratch:
        data = args.data
        if data is None:
            data = Path(scratch) / "data"
            build_dataset(data, LagSumSpec(num_sequences=args.sequences), progress=False)
        ds = open_dataset(data)
        rows = [bench_batch_size(ds, int(b), args.steps, args.warmup, device)
                for b in args.batch_sizes.split(",")]
    print(f"# {name}, torch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version() if device.type == 'cuda' else '-'}")
    print(f"{'batch':>6} {'steps':>6} {'from shards M/s':>16} {'in memory M/s':>14} {'ratio':>6}")
    for r in rows:
        print(f"{r['batch_size']:>6} {r['steps']:>6} {r['from_shards_per_s'] / 1e6:>16.2f} "
              f"{r['in_memory_per_s'] / 1e6:>14.2f} {r['ratio']:>6.0%}")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
