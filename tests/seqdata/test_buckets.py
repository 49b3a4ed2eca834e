import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdata import LagSumSpec, LogNormalLengths, SpecError
from seqdata.buckets import (
    auto_boundaries,
    bucket_index,
    check_boundaries,
    equal_width_boundaries,
    expected_padding,
    optimal_boundaries,
    padding_alternatives,
)
from seqdata.store.build import resolve_boundaries


def brute_force_padding(pmf: np.ndarray, low: int, k: int) -> float:
    """The least expected padding over every way of cutting the support into <= k buckets."""
    support = [low + i for i in np.flatnonzero(pmf > 0)]
    best = 1.0
    for r in range(k):
        for inner in itertools.combinations(support[:-1], r):
            best = min(best, expected_padding(pmf, low, (*inner, support[-1])))
    return best


@settings(max_examples=150, deadline=None)
@given(weights=st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]), min_size=1, max_size=9),
       low=st.integers(1, 20), k=st.integers(1, 5))
def test_optimal_boundaries_match_brute_force(weights, low, k):
    pmf = np.array(weights)
    if pmf.sum() == 0:
        pmf[0] = 1.0
    pmf = pmf / pmf.sum()
    bounds = optimal_boundaries(pmf, low, k)
    assert len(bounds) <= k
    assert list(bounds) == sorted(set(bounds))
    assert expected_padding(pmf, low, bounds) == pytest.approx(brute_force_padding(pmf, low, k),
                                                               abs=1e-12)


def test_bucket_index_uses_inclusive_upper_bounds():
    np.testing.assert_array_equal(bucket_index(np.array([10, 20, 21, 40, 41, 99]), (20, 40, 99)),
                                  [0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("dist", [LagSumSpec().lengths, LogNormalLengths()])
def test_auto_boundaries_keep_padding_low(dist):
    bounds = auto_boundaries(dist.pmf(), dist.low)
    assert bounds[-1] == dist.high
    assert expected_padding(dist.pmf(), dist.low, bounds) <= 0.02
    fewer = optimal_boundaries(dist.pmf(), dist.low, len(bounds) - 1)
    assert expected_padding(dist.pmf(), dist.low, fewer) > 0.02  # it is the fewest


def test_more_buckets_never_pad_more():
    pmf = LogNormalLengths().pmf()
    pads = [expected_padding(pmf, 10, optimal_boundaries(pmf, 10, k)) for k in range(1, 20)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(pads))


@pytest.mark.parametrize("bounds, match", [
    ((), "at least one"),
    ((20, 20, 99), "strictly increasing"),
    ((0, 99), "strictly increasing positive"),
    ((20, 50), "last boundary must be >= the max length 99, got 50"),
    ((5, 99), "first boundary must be >= the min length 10"),
])
def test_bad_boundaries_are_refused(bounds, match):
    with pytest.raises(SpecError, match=match):
        check_boundaries(bounds, 10, 99)


def test_resolve_boundaries_choices():
    spec = LagSumSpec()
    assert resolve_boundaries(spec, (30, 99)) == (30, 99)
    assert len(resolve_boundaries(spec, num_buckets=4)) == 4
    with pytest.raises(SpecError, match="not both"):
        resolve_boundaries(spec, (30, 99), 4)


def test_alternatives_include_the_choice_and_worse_naive_ones():
    pmf = LagSumSpec().lengths.pmf()
    chosen = auto_boundaries(pmf, 10)
    rows = {label: (bounds, pad) for label, bounds, pad in padding_alternatives(pmf, 10, chosen)}
    assert rows["chosen"] == (chosen, expected_padding(pmf, 10, chosen))
    assert rows["one bucket"][1] > 0.4  # everything padded to 99
    assert rows[f"equal width, {len(chosen)}"][1] >= rows["chosen"][1] - 1e-12
    assert rows[f"optimal, {2 * len(chosen)}"][1] < rows["chosen"][1]


def test_equal_width_boundaries_cover_the_range():
    assert equal_width_boundaries(10, 99, 3) == (39, 69, 99)  # 30 lengths each
    assert equal_width_boundaries(1, 3, 10) == (1, 2, 3)
