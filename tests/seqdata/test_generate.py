import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdata import LagSumSpec, LogNormalLengths, UniformLengths
from seqdata.generate import LAG_BLOCK, ChunkBuffers, chunk_rng, generate_chunk, lag_sums


def naive_labels(x: np.ndarray, window: int, threshold: float) -> np.ndarray:
    """The label rule, one timestep at a time, accumulated in float32 like the seed."""
    y = np.zeros(len(x), np.uint8)
    for t in range(len(x)):
        s = np.float32(x[t, 0])
        for i in range(1, window):
            if t - i >= 0:
                s = np.float32(s + x[t - i, i])
        y[t] = s > np.float32(threshold)
    return y


@settings(max_examples=25, deadline=None)
@given(features=st.integers(1, 8), data=st.data(), low=st.integers(1, 6),
       span=st.integers(0, 12), seed=st.integers(0, 2**32), n=st.integers(1, 40))
def test_labels_match_a_naive_loop(features, data, low, span, seed, n):
    window = data.draw(st.integers(1, features))
    threshold = data.draw(st.floats(0.0, float(window)))
    spec = LagSumSpec(num_features=features, window=window, threshold=threshold,
                      lengths=UniformLengths(low, low + span), num_sequences=n, seed=seed,
                      chunk_size=16)
    for chunk in range(spec.num_chunks):
        seqs = generate_chunk(spec, chunk)
        for i in range(len(seqs)):
            x, y = seqs.sequence(i)
            np.testing.assert_array_equal(y, naive_labels(x, window, threshold))


def test_labels_are_balanced_enough_to_learn():
    seqs = generate_chunk(LagSumSpec(num_sequences=2000), 0)
    assert 0.3 < seqs.y.mean() < 0.6


def test_leak_mode_equals_the_seeds_aliasing():
    spec = LagSumSpec(num_sequences=50, seed=3)
    clean = generate_chunk(spec, 0)
    leaky = generate_chunk(LagSumSpec(num_sequences=50, seed=3, seed_compat_leak=True), 0)
    for i in range(len(clean)):
        x, y = clean.sequence(i)
        # The seed's own code, run on the same values (float32, shape (1, L, 5)):
        seed_x = x[None].copy()
        seed_y = seed_x[:, :, 0]          # a view: this is the bug
        for k in range(1, 5):
            seed_y[:, k:] += seed_x[:, :-k, k]
        seed_labels = (seed_y > 2.5).astype(np.uint8)[0]
        lx, ly = leaky.sequence(i)
        np.testing.assert_array_equal(lx, seed_x[0])
        np.testing.assert_array_equal(ly, seed_labels)
        np.testing.assert_array_equal(ly, y)  # labels are the same either way
        np.testing.assert_array_equal(lx[:, 1:], x[:, 1:])
        assert not np.array_equal(lx[:, 0], x[:, 0])


def test_chunk_layout_is_sorted_and_complete():
    spec = LagSumSpec(num_sequences=1000, chunk_size=300)
    ids = []
    for chunk in range(spec.num_chunks):
        seqs = generate_chunk(spec, chunk)
        lengths = seqs.lengths
        assert np.all(np.diff(lengths) >= 0)
        assert seqs.x.dtype == np.float32 and seqs.y.dtype == np.uint8
        assert seqs.x.min() >= 0 and seqs.x.max() < 1
        ids.append(seqs.ids)
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(1000))


def test_content_depends_only_on_spec_and_id():
    small = generate_chunk(LagSumSpec(num_sequences=70, chunk_size=64), 1)
    large = generate_chunk(LagSumSpec(num_sequences=500, chunk_size=64), 1)
    where = {int(i): k for k, i in enumerate(large.ids)}
    for k, i in enumerate(small.ids):
        np.testing.assert_array_equal(small.sequence(k)[0], large.sequence(where[int(i)])[0])
    other_seed = generate_chunk(LagSumSpec(num_sequences=500, chunk_size=64, seed=1), 1)
    assert not np.array_equal(other_seed.x[:10], large.x[:10])


def test_lag_sums_do_not_cross_sequence_boundaries():
    x = np.ones((7, 3), np.float32)
    offsets = np.array([0, 1, 3, 7])
    np.testing.assert_array_equal(lag_sums(x, offsets, 3), [1, 1, 2, 1, 2, 3, 3])


@pytest.mark.parametrize("window", [1, 2, 5])
def test_blocked_lag_sums_equal_the_seeds_per_sequence_sums(window):
    rng = np.random.default_rng(window)
    lengths = rng.integers(1, 60, size=3 * LAG_BLOCK // 20)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    assert offsets[-1] > 2 * LAG_BLOCK  # several blocks, sequences straddling their edges
    x = rng.random((int(offsets[-1]), 5), dtype=np.float32)
    expected = []
    for a, b in itertools.pairwise(offsets):
        s = x[a:b, 0].copy()  # the seed's code, one sequence at a time
        for k in range(1, window):
            s[k:] += x[a:b - k, k]
        expected.append(s)
    np.testing.assert_array_equal(lag_sums(x, offsets, window), np.concatenate(expected))


def test_reused_buffers_give_the_values_of_fresh_generation():
    # Chunks of different sizes (lognormal lengths, a short last chunk) through one set of
    # buffers, which therefore shrink, grow and are overwritten.
    for spec in (LagSumSpec(num_sequences=2500, chunk_size=1000, lengths=LogNormalLengths(),
                            seed=4),
                 LagSumSpec(num_sequences=2500, chunk_size=1000, seed_compat_leak=True)):
        buffers = ChunkBuffers()
        for chunk in (0, 2, 1, 0):
            reused, fresh = generate_chunk(spec, chunk, buffers), generate_chunk(spec, chunk)
            for field in ("x", "y", "offsets", "ids"):
                np.testing.assert_array_equal(getattr(reused, field), getattr(fresh, field))


def test_values_drawn_block_by_block_are_the_chunks_stream_drawn_whole():
    spec = LagSumSpec(num_sequences=3000, chunk_size=3000)
    rng = chunk_rng(spec, 0)
    total = int(spec.lengths.sample(rng, spec.chunk_size).sum())
    assert total > 2 * LAG_BLOCK
    expected = rng.random((total, spec.num_features), dtype=np.float32)
    np.testing.assert_array_equal(generate_chunk(spec, 0, ChunkBuffers()).x, expected)


def test_chunk_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"chunk must be in 0\.\.0"):
        generate_chunk(LagSumSpec(num_sequences=10), 1)
