"""Length buckets: boundaries as pure functions of a length distribution.

Boundaries are the inclusive upper lengths of the buckets, strictly increasing: with
boundaries ``(20, 40, 99)`` bucket 0 holds lengths ..20, bucket 1 21..40, bucket 2 41..99.
The automatic choice minimises the expected padding of batches padded to their bucket's
upper bound, by dynamic programming over the length probabilities.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from seqdata.checks import check_int
from seqdata.errors import SpecError

DEFAULT_MAX_PADDING = 0.02
MAX_BUCKETS = 64


def bucket_index(lengths: np.ndarray, boundaries: Sequence[int]) -> np.ndarray:
    """The bucket of each length (int64)."""
    return np.searchsorted(np.asarray(boundaries), lengths, side="left")


def bucket_lower_bounds(boundaries: Sequence[int], min_length: int) -> list[int]:
    """The smallest length each bucket can hold."""
    return [min_length, *(b + 1 for b in boundaries[:-1])]


def check_boundaries(boundaries: Sequence[int], min_length: int,
                     max_length: int) -> tuple[int, ...]:
    """Validated boundaries covering lengths ``min_length..max_length``."""
    b = tuple(int(v) for v in boundaries)
    if not b:
        raise SpecError("boundaries must hold at least one length, got none")
    if any(v < 1 for v in b) or any(u <= v for v, u in itertools.pairwise(b)):
        raise SpecError(f"boundaries must be strictly increasing positive lengths, got {list(b)}")
    if b[-1] < max_length:
        raise SpecError(f"the last boundary must be >= the max length {max_length}, got {b[-1]}")
    if len(b) > 1 and b[0] < min_length:
        raise SpecError(f"the first boundary must be >= the min length {min_length} "
                        f"(else its bucket is always empty), got {b[0]}")
    return b


def expected_padding(pmf: np.ndarray, min_length: int, boundaries: Sequence[int]) -> float:
    """Padding share of all steps when every sequence is padded to its bucket's bound."""
    support = np.flatnonzero(pmf > 0)
    lengths = support + min_length
    upper = np.asarray(boundaries)[bucket_index(lengths, boundaries)]
    padded = float(np.dot(pmf[support], upper))
    return 0.0 if padded == 0 else 1.0 - float(np.dot(pmf[support], lengths)) / padded


# The dynamic programme holds a few (points x points) float64 tables: at most 1024
# candidate boundaries keep them at 8 MiB each. Beyond that many distinct lengths,
# neighbouring lengths are merged into 1024 bins of equal count, whose upper ends are the
# candidates (the result is then optimal among those, not among all lengths).
MAX_DP_POINTS = 1024


def _candidates(pmf: np.ndarray, min_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper length, probability, sum of probability x length) of each candidate bin:
    every length with mass, or bins of neighbouring ones when there are too many."""
    support = np.flatnonzero(pmf > 0)
    if len(support) == 0:
        raise SpecError("the length distribution has no mass")
    lengths = (support + min_length).astype(np.float64)
    p = pmf[support]
    size = -(-len(support) // MAX_DP_POINTS)
    starts = np.arange(0, len(support), size)
    ends = np.minimum(starts + size, len(support)) - 1
    return lengths[ends], np.add.reduceat(p, starts), np.add.reduceat(p * lengths, starts)


def _optimal_tables(pmf: np.ndarray, min_length: int, max_buckets: int) -> list[tuple[int, ...]]:
    """Optimal boundaries for 1..max_buckets buckets (entry k-1 has k buckets or fewer)."""
    uppers, p, q = _candidates(pmf, min_length)
    n = len(uppers)
    cp = np.concatenate(([0.0], np.cumsum(p)))
    cq = np.concatenate(([0.0], np.cumsum(q)))
    a = np.arange(n)[:, None]
    b = np.arange(n)[None, :]
    # cost[a, b]: expected padding of one bucket holding bins a..b, padded to uppers[b].
    cost = uppers[None, :] * (cp[b + 1] - cp[a]) - (cq[b + 1] - cq[a])
    cost = np.where(a <= b, cost, np.inf)
    best = cost[0].copy()  # best[b]: min cost of covering bins 0..b with j buckets
    choices: list[np.ndarray] = []
    results = [(int(uppers[-1]),)]
    for _ in range(1, min(max_buckets, n)):
        total = np.concatenate(([np.inf], best[:-1]))[:, None] + cost  # last bucket starts at a
        arg = np.argmin(total, axis=0)
        best = total[arg, np.arange(n)]
        choices.append(arg)
        cuts, end = [], n - 1
        for arg_j in reversed(choices):
            start = int(arg_j[end])
            cuts.append(end)
            end = start - 1
        cuts.append(end)
        results.append(tuple(int(uppers[c]) for c in sorted(cuts)))
    return results


def optimal_boundaries(pmf: np.ndarray, min_length: int, num_buckets: int) -> tuple[int, ...]:
    """Boundaries of ``num_buckets`` buckets minimising the expected padding."""
    check_int("num_buckets", num_buckets, 1)
    return _optimal_tables(pmf, min_length, num_buckets)[-1]


def auto_boundaries(pmf: np.ndarray, min_length: int,
                    max_padding: float = DEFAULT_MAX_PADDING,
                    max_buckets: int = MAX_BUCKETS) -> tuple[int, ...]:
    """The fewest optimal buckets whose expected padding is at most ``max_padding``."""
    tables = _optimal_tables(pmf, min_length, max_buckets)
    for bounds in tables:
        if expected_padding(pmf, min_length, bounds) <= max_padding:
            return bounds
    return tables[-1]


def equal_width_boundaries(min_length: int, max_length: int, num_buckets: int) -> tuple[int, ...]:
    """``num_buckets`` buckets of (nearly) equal width: the naive choice, for comparison."""
    edges = np.linspace(min_length - 1, max_length, num_buckets + 1)[1:]
    return tuple(sorted({max(round(float(e)), min_length) for e in edges}))


def padding_alternatives(pmf: np.ndarray, min_length: int,
                         chosen: Sequence[int]) -> list[tuple[str, tuple[int, ...], float]]:
    """(label, boundaries, expected padding) of ``chosen`` and of a few other choices."""
    k = len(chosen)
    max_length = min_length + int(np.flatnonzero(pmf > 0)[-1])
    options = [("chosen", tuple(chosen)),
               ("one bucket", (max_length,)),
               (f"equal width, {k}", equal_width_boundaries(min_length, max_length, k))]
    for n in sorted({max(1, k // 2), min(2 * k, MAX_BUCKETS * 2)}):
        options.append((f"optimal, {n}", optimal_boundaries(pmf, min_length, n)))
    return [(label, b, expected_padding(pmf, min_length, b)) for label, b in options]
