"""`BatchConfig`: how an epoch is cut into batches, the one object every consumer passes.

The trainer, the bridges and `Dataset.batches` all take a `BatchConfig`; nothing turns it
into keyword arguments and rebuilds it on the other side.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from seqdata.checks import check_bool, check_choice, check_int
from seqdata.errors import SpecError

MODES = ("bucketed", "padded")
DEFAULT_BATCH_SIZE = 1000
DEFAULT_SHUFFLE_BLOCK = 32
# Fields that `BatchConfig.to_dict` writes only when they differ from their default.
LATER_FIELDS = ("static_shapes", "rank", "num_ranks")


@dataclass(frozen=True)
class BatchConfig:
    """How an epoch is cut into batches.

    Args:
        mode: "bucketed" (each batch from one length bucket) or "padded" (all lengths mixed).
        batch_size: sequences per batch (default 1000, the seed's, if no budget is given).
        max_timesteps: instead of a count, a budget: B * L <= max_timesteps per batch.
        seed, epoch: what every random choice of the epoch is drawn from.
        shuffle: shuffle shard order, order within groups and batch order (default on).
        pad_to_bucket: bucketed only: pad every batch to its bucket's upper bound, so that
            a bucket's full batches share one shape (its short last batch is a shape of
            its own; ``static_shapes`` removes those too).
        same_length: bucketed only: every batch holds sequences of one single length.
        static_shapes: every batch of a group has one shape, for jitted steps. Bucketed:
            as ``pad_to_bucket`` (which it implies), and a group's short last batch is
            filled up to the full count (``batch_size``, or ``max_timesteps // bound``)
            with fill rows: x zeros, y 0, mask all False, length 0, id -1. Padded: every
            batch is padded to the longest boundary and filled likewise (one shape).
            Batches are cut as with ``pad_to_bucket``: removing the fill rows gives
            exactly those batches. Not with ``same_length`` (one shape per length).
        drop_remainder: drop the last, short batch of each group.
        window_shards: shards read into memory at a time.
        shuffle_block: neighbours shuffled together as one block (1: every sequence alone).
        read_ahead: read the next window on a thread while this one is batched.
        start: skip (without materializing) the first ``start`` batches of the epoch.
        rank, num_ranks: yield rank ``rank``'s share of each batch of the one epoch plan
            (a global batch: ``batch_size`` and ``max_timesteps`` are global), for
            ``num_ranks`` data-parallel ranks. Every rank gets one batch per global batch,
            so every rank runs the same number of steps; a global batch's rows are split
            in contiguous parts whose counts differ by at most one, and a rank with one
            row fewer gets a fill row (as ``static_shapes`` fills: id -1, all masked).
            Every rank's batch of a step has the global batch's shape in time (its
            longest sequence, or its bucket's bound). The plan does not depend on
            ``num_ranks``: global batch k is the same on any number of ranks, so a run
            stopped at batch k resumes at ``start=k`` on any number of ranks.

    >>> BatchConfig(max_timesteps=50_000).size is None
    True
    """

    mode: str = "bucketed"
    batch_size: int | None = None
    max_timesteps: int | None = None
    seed: int = 0
    epoch: int = 0
    shuffle: bool = True
    pad_to_bucket: bool = False
    same_length: bool = False
    drop_remainder: bool = False
    window_shards: int = 2
    shuffle_block: int = DEFAULT_SHUFFLE_BLOCK
    read_ahead: bool = True
    start: int = 0
    static_shapes: bool = False
    rank: int = 0
    num_ranks: int = 1

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        if self.batch_size is not None and self.max_timesteps is not None:
            raise SpecError("give either batch_size or max_timesteps, not both")
        for name in ("batch_size", "max_timesteps"):
            check_int(name, getattr(self, name), 1, optional=True)
        for name in ("window_shards", "shuffle_block"):
            check_int(name, getattr(self, name), 1)
        for name in ("seed", "epoch", "start"):
            check_int(name, getattr(self, name), 0)
        check_int("num_ranks", self.num_ranks, 1)
        check_int("rank", self.rank, 0)
        if self.rank >= self.num_ranks:
            raise SpecError(f"rank must be in 0..{self.num_ranks - 1} (num_ranks="
                            f"{self.num_ranks}), got {self.rank}")
        for name in ("shuffle", "pad_to_bucket", "same_length", "drop_remainder", "read_ahead",
                     "static_shapes"):
            check_bool(name, getattr(self, name))
        if self.mode == "padded" and (self.pad_to_bucket or self.same_length):
            raise SpecError("pad_to_bucket and same_length apply to bucketed mode only")
        if self.static_shapes and self.same_length:
            raise SpecError("static_shapes cannot be combined with same_length "
                            "(that is one shape per length); expected one of them")

    @property
    def size(self) -> int | None:
        """The batch count, or None when batches are cut by a timestep budget."""
        if self.max_timesteps is not None:
            return None
        return self.batch_size or DEFAULT_BATCH_SIZE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as a run's config.json records it).

        Fields added after runs were first recorded are left out while they hold their
        default, so that the config.json of an older run still equals a resumed run's.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in LATER_FIELDS or getattr(self, f.name) != f.default}


OPTION_NAMES = tuple(f.name for f in fields(BatchConfig))


def as_config(config: BatchConfig | str = "bucketed", /, **options: Any) -> BatchConfig:
    """A `BatchConfig` from either a config (``options`` replace its fields) or a mode
    and options (a ``mode`` option wins): what the forms of `Dataset.batches` accept.

    >>> as_config("padded", batch_size=8) == BatchConfig("padded", batch_size=8)
    True
    """
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise SpecError(f"unknown batching options {unknown}, expected some of "
                        f"{list(OPTION_NAMES)}")
    if isinstance(config, BatchConfig):
        return replace(config, **options) if options else config
    return BatchConfig(**{"mode": config, **options})
