"""Frozen, self-validating specs of a lag-sum dataset and its length distributions.

A spec fully determines a dataset: the content of sequence ``id`` is a function of
(spec, id) only, whatever the number of workers, the bucket boundaries or the format.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from seqdata.checks import check_bool, check_int, check_number
from seqdata.errors import SpecError

MAX_LENGTH = 1_000_000
DEFAULT_CHUNK_SIZE = 32_768
# A generation chunk is held in memory whole (values, lag sums, labels) by each worker:
# at most this many bytes at the longest length, whatever the lengths drawn. The default
# spec needs 81 MB; 2 GiB leaves room for two workers and the writer on a small machine.
MAX_CHUNK_BYTES = 2 * 2**30


@dataclass(frozen=True)
class UniformLengths:
    """Lengths uniform over ``low..high`` inclusive (the seed's ``randint(10, 100)``)."""

    low: int = 10
    high: int = 99
    kind: ClassVar[str] = "uniform"

    def __post_init__(self) -> None:
        check_int("min length", self.low, 1, MAX_LENGTH)
        check_int("max length", self.high, 1, MAX_LENGTH)
        if self.high < self.low:
            raise SpecError(f"max length must be >= min length {self.low}, got {self.high}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` lengths as int32."""
        return rng.integers(self.low, self.high, size=n, endpoint=True, dtype=np.int32)

    def pmf(self) -> np.ndarray:
        """Probabilities of lengths ``low..high`` (index 0 is ``low``)."""
        n = self.high - self.low + 1
        return np.full(n, 1.0 / n)


@dataclass(frozen=True)
class LogNormalLengths:
    """Lengths ``round(exp(N(log(median), sigma)))`` clipped to ``low..high``.

    A skewed distribution with many short and few long sequences, the shape of
    real text and speech corpora.
    """

    median: float = 40.0
    sigma: float = 0.6
    low: int = 10
    high: int = 400
    kind: ClassVar[str] = "lognormal"

    def __post_init__(self) -> None:
        check_number("length median", self.median, positive=True)
        check_number("length sigma", self.sigma, positive=True)
        check_int("min length", self.low, 1, MAX_LENGTH)
        check_int("max length", self.high, 1, MAX_LENGTH)
        if self.high < self.low:
            raise SpecError(f"max length must be >= min length {self.low}, got {self.high}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        raw = np.rint(rng.lognormal(math.log(self.median), self.sigma, size=n))
        return np.clip(raw, self.low, self.high).astype(np.int32)

    def pmf(self) -> np.ndarray:
        # P(round(L) = k) from the normal CDF of log L; the clipped tails fold into the ends.
        edges = np.arange(self.low - 0.5, self.high + 1.5)
        z = (np.log(np.maximum(edges, 1e-300)) - math.log(self.median)) / self.sigma
        cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in z]))
        cdf[0], cdf[-1] = 0.0, 1.0
        return np.diff(cdf)


LengthDistribution = UniformLengths | LogNormalLengths
LENGTH_KINDS: dict[str, type[UniformLengths] | type[LogNormalLengths]] = {
    "uniform": UniformLengths,
    "lognormal": LogNormalLengths,
}


@dataclass(frozen=True)
class LagSumSpec:
    """A synthetic lag-sum dataset.

    Values are U[0,1) float32 of shape (length, num_features). The label of timestep t is
    1 if ``x[t,0] + x[t-1,1] + ... + x[t-K+1,K-1] > threshold`` (terms before the start
    are absent; the sum is accumulated in float32 in that order), else 0.

    Args:
        num_features: F, features per timestep.
        window: K, how many past timesteps (and features) the label sums; K <= F.
        threshold: the label is ``sum > threshold``.
        lengths: the length distribution.
        num_sequences: how many sequences the dataset holds.
        seed: the dataset's seed.
        chunk_size: sequences per generation chunk (and per shard).
        seed_compat_leak: reproduce the seed answer's aliasing bug, which overwrites
            feature 0 with the lag sum itself (the model then sees the answer).

    >>> LagSumSpec(num_sequences=100, seed=1).window
    5
    """

    num_features: int = 5
    window: int = 5
    threshold: float = 2.5
    lengths: LengthDistribution = field(default_factory=UniformLengths)
    num_sequences: int = 100_000
    seed: int = 0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    seed_compat_leak: bool = False

    def __post_init__(self) -> None:
        check_int("num_features", self.num_features, 1, 4096)
        check_int("window", self.window, 1, 4096)
        if self.window > self.num_features:
            raise SpecError(f"window must be <= num_features {self.num_features}, "
                            f"got {self.window}")
        check_number("threshold", self.threshold)
        if not isinstance(self.lengths, UniformLengths | LogNormalLengths):
            raise SpecError(f"lengths must be a length distribution, got {self.lengths!r}")
        check_int("num_sequences", self.num_sequences, 1, 2**40)
        check_int("seed", self.seed, 0, 2**63 - 1)
        check_int("chunk_size", self.chunk_size, 1, 2**24)
        check_bool("seed_compat_leak", self.seed_compat_leak)
        if self.max_chunk_bytes > MAX_CHUNK_BYTES:
            raise SpecError(
                f"chunk_size {self.chunk_size:,} x max length {self.lengths.high:,} x "
                f"{4 * self.num_features + 5} bytes a timestep is "
                f"{self.max_chunk_bytes / 2**30:.1f} GiB per generation chunk, more than "
                f"the {MAX_CHUNK_BYTES // 2**30} GiB limit; lower chunk_size (at most "
                f"{MAX_CHUNK_BYTES // (self.lengths.high * (4 * self.num_features + 5)):,} "
                f"here)")

    @property
    def max_chunk_bytes(self) -> int:
        """Memory one generation chunk can need: every sequence at the longest length,
        float32 values and lag sums and uint8 labels."""
        return self.chunk_size * self.lengths.high * (4 * self.num_features + 5)

    @property
    def expected_bytes(self) -> int:
        """About how many bytes the dataset's shards take, erring high: the expected
        number of timesteps (from the length distribution) at 4 bytes a feature and 1 a
        label, 1 more a value for Parquet's list levels, and ids, lengths and offsets
        (HDF5 writes about 20% less, Parquet about 3% less)."""
        pmf = self.lengths.pmf()
        mean = float(np.dot(pmf, np.arange(self.lengths.low, self.lengths.high + 1)))
        return int(self.num_sequences * (mean * (5 * self.num_features + 2) + 24))

    @property
    def num_chunks(self) -> int:
        return -(-self.num_sequences // self.chunk_size)

    def chunk_ids(self, chunk: int) -> tuple[int, int]:
        """The half-open id range ``[start, stop)`` of chunk ``chunk``."""
        start = chunk * self.chunk_size
        return start, min(start + self.chunk_size, self.num_sequences)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lengths"] = {"kind": self.lengths.kind, **asdict(self.lengths)}
        return d

    @classmethod
    def from_dict(cls, d: Any) -> LagSumSpec:
        """Rebuild a spec from :meth:`to_dict`; raises SpecError on anything else."""
        if not isinstance(d, dict):
            raise SpecError(f"spec must be an object, got {type(d).__name__}")
        d = dict(d)
        lengths = d.pop("lengths", None)
        if not isinstance(lengths, dict) or lengths.get("kind") not in LENGTH_KINDS:
            raise SpecError(f"spec.lengths must be an object with kind in "
                            f"{sorted(LENGTH_KINDS)}, got {lengths!r}")
        lengths = dict(lengths)
        length_cls = LENGTH_KINDS[lengths.pop("kind")]
        try:
            return cls(lengths=length_cls(**lengths), **d)
        except TypeError as e:
            raise SpecError(f"spec has unexpected or missing fields: {e}") from None
