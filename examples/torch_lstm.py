"""The seed's model as PyTorch layers, trained on a seqdata dataset through a DataLoader.

    python examples/torch_lstm.py DATA [--epochs 1] [--max-timesteps N | --batch-size N]
                                  [--num-workers 2] [--seed 0] [--lr 0.001] [--device D]

LSTM(32) -> LSTM(8) -> Linear(2) at every timestep over the dataset's 5 features, with a
cross-entropy loss over the real timesteps only (padding sits after them and an LSTM runs
forward, so it never reaches a real step's output). Batches come from
`seqdata.torch.BatchDataset` through a plain ``torch.utils.data.DataLoader``: its workers
split each epoch, and the loader yields the same batches, in the same order, whatever
their number. Prints the masked loss and accuracy of every epoch:

    epoch 1/2: loss 0.6479 accuracy 0.6131 timesteps 54687 seconds 3.1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

if __package__ in (None, ""):  # run as a script from a checkout: the root holds `seqdata`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqdata.torch import BatchDataset


class SeedLSTM(nn.Module):
    """LSTM(32) -> LSTM(8) -> Linear(2) at every timestep."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.first = nn.LSTM(num_features, 32, batch_first=True)
        self.second = nn.LSTM(32, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second(self.first(x)[0])[0])


def masked_step_stats(logits: torch.Tensor, y: torch.Tensor,
                      mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, number right) over the real timesteps (``mask``) only."""
    real = logits[mask]  # (real steps, 2): padding never enters the loss
    labels = y[mask].long()
    loss = nn.functional.cross_entropy(real, labels)
    return loss, (real.argmax(-1) == labels).sum()


def common_arguments(doc: str, batch: str = "batch") -> argparse.ArgumentParser:
    """The arguments both examples take: data, epochs, the batch's size, seed, lr."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("data", type=Path, help="a seqdata dataset directory")
    parser.add_argument("--epochs", type=int, default=1)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--batch-size", type=int, default=None, help=f"sequences per {batch}")
    size.add_argument("--max-timesteps", type=int, default=None,
                      help=f"a budget of padded timesteps per {batch} instead of a count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", "--learning-rate", type=float, default=1e-3)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = common_arguments(__doc__)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    data = BatchDataset(args.data, "bucketed", batch_size=args.batch_size,
                        max_timesteps=args.max_timesteps, seed=args.seed)
    # batch_size=None: the dataset's items are whole batches already.
    loader = DataLoader(data, batch_size=None, num_workers=args.num_workers,
                        pin_memory=device.type == "cuda")
    model = SeedLSTM(data.dataset.num_features).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(args.epochs):
        data.set_epoch(epoch)  # workers get a copy of `data`: tell it the epoch each time
        started = time.perf_counter()
        total_loss = torch.zeros((), device=device)
        right = torch.zeros((), dtype=torch.long, device=device)
        steps = 0
        for batch in loader:
            x, y, mask = (batch[k].to(device, non_blocking=True) for k in ("x", "y", "mask"))
            loss, hits = masked_step_stats(model(x), y, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * mask.sum()
            right += hits
            steps += int(batch["lengths"].sum())
        seconds = time.perf_counter() - started
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total_loss.item() / steps:.4f} "
              f"accuracy {right.item() / steps:.4f} timesteps {steps} seconds {seconds:.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
