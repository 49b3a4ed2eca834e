"""The GPU check: the seed's LSTM in PyTorch trained from our shards vs from device memory.

    python benchmarks/gpu_torch.py [--data DIR] [--batch-sizes 1000,8192] [--steps N]
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
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: the repository root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqdata import BatchConfig, BatchStream, Dataset, LagSumSpec, build_dataset, open_dataset
from seqdata.torch import prefetch_to_device

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


def stream(ds: Dataset, batch_size: int, device: torch.device, steps: int) -> Iterator[Tensors]:
    """``steps`` batches from the shards, epoch after epoch, made on a loader thread."""
    batches = itertools.islice(BatchStream(ds, BatchConfig("bucketed", batch_size=batch_size)),
                               steps)
    for t in prefetch_to_device(batches, device):
        yield t["x"], t["y"], t["mask"]


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
