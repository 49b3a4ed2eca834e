import numpy as np
import pytest

from seqdata import LagSumSpec, LogNormalLengths, SpecError, UniformLengths


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_features=0), "num_features must be an integer in 1..4096, got 0"),
    (dict(num_features=2.5), "num_features must be an integer"),
    (dict(window=6), "window must be <= num_features 5, got 6"),
    (dict(window=0), "window must be an integer in"),
    (dict(threshold=float("nan")), "threshold must be a finite"),
    (dict(threshold="2.5"), "threshold must be a finite number"),
    (dict(num_sequences=0), "num_sequences must be an integer in"),
    (dict(num_sequences=True), "num_sequences must be an integer"),
    (dict(seed=-1), "seed must be an integer in"),
    (dict(chunk_size=0), "chunk_size must be an integer in"),
    (dict(seed_compat_leak=1), "seed_compat_leak must be true or false"),
    (dict(lengths=(10, 99)), "lengths must be a length distribution"),
])
def test_spec_rejects_bad_values(kwargs, match):
    with pytest.raises(SpecError, match=match):
        LagSumSpec(**kwargs)


@pytest.mark.parametrize("make, match", [
    (lambda: UniformLengths(0, 10), "min length must be an integer in"),
    (lambda: UniformLengths(50, 40), "max length must be >= min length 50, got 40"),
    (lambda: LogNormalLengths(median=-1), "length median must be a finite positive"),
    (lambda: LogNormalLengths(sigma=0), "length sigma must be a finite positive"),
    (lambda: LogNormalLengths(low=500, high=400), "max length must be >= min length"),
])
def test_length_distributions_reject_bad_values(make, match):
    with pytest.raises(SpecError, match=match):
        make()


def test_spec_round_trips_through_dict():
    for spec in [LagSumSpec(), LagSumSpec(num_features=7, window=3, threshold=1.5, seed=9,
                                          lengths=LogNormalLengths(30, 0.8, 5, 300),
                                          seed_compat_leak=True)]:
        assert LagSumSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("doc, match", [
    ([], "spec must be an object"),
    ({"lengths": {"kind": "zipf"}}, "spec.lengths must be an object with kind"),
    ({**LagSumSpec().to_dict(), "colour": 1}, "unexpected or missing fields"),
])
def test_spec_from_dict_rejects_bad_documents(doc, match):
    with pytest.raises(SpecError, match=match):
        LagSumSpec.from_dict(doc)


@pytest.mark.parametrize("dist", [UniformLengths(), UniformLengths(3, 3),
                                  LogNormalLengths(), LogNormalLengths(20, 1.2, 2, 1000)])
def test_lengths_stay_in_range_and_match_their_pmf(dist):
    rng = np.random.default_rng(0)
    lengths = dist.sample(rng, 200_000)
    assert lengths.dtype == np.int32
    assert lengths.min() >= dist.low and lengths.max() <= dist.high
    pmf = dist.pmf()
    assert len(pmf) == dist.high - dist.low + 1
    assert pmf.sum() == pytest.approx(1.0)
    observed = np.bincount(lengths - dist.low, minlength=len(pmf)) / len(lengths)
    assert np.abs(observed - pmf).max() < 0.01


def test_lognormal_is_skewed_toward_short_sequences():
    lengths = LogNormalLengths().sample(np.random.default_rng(1), 100_000)
    assert np.median(lengths) == pytest.approx(40, abs=1)
    assert lengths.mean() > np.median(lengths)
