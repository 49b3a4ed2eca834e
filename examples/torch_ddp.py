"""The seed's model trained with PyTorch DDP on N processes (gloo: CPUs are enough),
each rank reading its part of every global batch through `seqdata.torch`.

    python examples/torch_ddp.py DATA [--ranks 2] [--epochs 1]
                                 [--max-timesteps N | --batch-size N] [--seed 0]
                                 [--stop-after K --checkpoint PATH] [--resume PATH]
                                 [--report JSON]

Every rank runs the same number of steps (one per global batch: ``rank=``/``num_ranks=``
split each batch of the one epoch plan), so no rank waits forever in an all-reduce. The
loss of a step is the mean over the *global* batch's real timesteps (each rank divides
its sum by the all-reduced count), so the gradients DDP averages are those of the global
batch: N ranks train as one rank would on the same global batches. ``batch_size`` and
``max_timesteps`` are global.

Elastic resume: ``--stop-after K --checkpoint PATH`` saves the model, the optimizer and
the position (epoch, global batch) after K steps; ``--resume PATH`` goes on from there
on any number of ranks, with the same global batches an uninterrupted run would train.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

if __package__ in (None, ""):  # run as a script from a checkout: the root holds `seqdata`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from torch_lstm import SeedLSTM, common_arguments  # as in the one-process example

from seqdata.torch import BatchDataset, loader


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(rank: int, args: argparse.Namespace, port: int) -> None:
    """One rank: the model in DDP, its part of each global batch, the global mean loss."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    torch.manual_seed(args.seed)  # every rank starts from the same weights
    torch.set_num_threads(1)
    data = BatchDataset(args.data, "bucketed", batch_size=args.batch_size,
                        max_timesteps=args.max_timesteps, seed=args.seed, rank=rank,
                        num_ranks=args.ranks)
    model = DistributedDataParallel(SeedLSTM(data.dataset.num_features))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    step = 0
    if args.resume:
        saved = torch.load(args.resume, weights_only=True)
        model.module.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        data.load_state_dict(saved["data"])
        step = saved["step"]
    trained: list[list[int]] = []  # this rank's ids at each step
    while data.epoch < args.epochs:
        for batch in loader(data):
            logits = model(batch["x"])
            mask = batch["mask"]
            real = mask.sum().float()
            dist.all_reduce(real)  # the global batch's real timesteps
            total = nn.functional.cross_entropy(logits[mask], batch["y"][mask].long(),
                                                reduction="sum")
            # DDP averages gradients over ranks: scale so that the average is the
            # gradient of the global batch's mean loss.
            loss = total * args.ranks / real.clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            ids = batch["ids"]
            trained.append(ids[ids >= 0].tolist())
            if step == args.stop_after:
                if rank == 0:
                    torch.save({"model": model.module.state_dict(),
                                "optimizer": optimizer.state_dict(),
                                "data": data.state_dict(), "step": step}, args.checkpoint)
                break
        if step == args.stop_after:
            break
    weights = torch.cat([p.detach().reshape(-1) for p in model.module.parameters()])
    reports: list[dict | None] = [None] * args.ranks
    dist.all_gather_object(reports, {"rank": rank, "steps": len(trained), "ids": trained,
                                     "weights": weights.tolist()})
    if rank == 0:
        for r in reports:
            print(f"rank {r['rank']}: {r['steps']} steps, "
                  f"{sum(len(i) for i in r['ids'])} sequences", flush=True)
        if args.report:
            args.report.write_text(json.dumps({"ranks": reports, "step": step}))
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = common_arguments(__doc__, "global batch")
    parser.add_argument("--ranks", type=int, default=2, help="processes (DDP world size)")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after K steps")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="where --stop-after saves the run")
    parser.add_argument("--resume", type=Path, default=None, help="a --checkpoint to go on from")
    parser.add_argument("--report", type=Path, default=None,
                        help="write each rank's steps, ids and final weights here (JSON)")
    args = parser.parse_args(argv)
    if args.ranks < 1:
        parser.error(f"--ranks must be >= 1, got {args.ranks}")
    if (args.stop_after is None) != (args.checkpoint is None):
        parser.error("--stop-after and --checkpoint go together")
    mp.spawn(run, args=(args, free_port()), nprocs=args.ranks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
