"""``static_shapes``: one shape per bucket (padded: one in all), short batches filled with
fully masked rows, and otherwise exactly the batches of ``pad_to_bucket``."""

from __future__ import annotations

import numpy as np
import pytest

from seqdata import BatchConfig, SpecError
from seqdata.read.group import FILL_ID, Group
from seqdata.sequences import Sequences

# (static config, the config whose batches it must equal once its fill rows are removed)
CASES = {
    "bucketed-count": (dict(batch_size=16), dict(batch_size=16, pad_to_bucket=True)),
    "bucketed-budget": (dict(max_timesteps=700), dict(max_timesteps=700, pad_to_bucket=True)),
    "bucketed-per-sequence-window-1": (
        dict(batch_size=7, shuffle_block=1, window_shards=1, seed=3),
        dict(batch_size=7, shuffle_block=1, window_shards=1, seed=3, pad_to_bucket=True)),
    "bucketed-count-drop": (dict(batch_size=16, drop_remainder=True),
                            dict(batch_size=16, drop_remainder=True, pad_to_bucket=True)),
    "bucketed-unshuffled": (dict(batch_size=20, shuffle=False),
                            dict(batch_size=20, shuffle=False, pad_to_bucket=True)),
    "padded-count": (dict(mode="padded", batch_size=32), dict(mode="padded", batch_size=32)),
    "padded-budget": (dict(mode="padded", max_timesteps=900), None),
}


def real(batch) -> np.ndarray:
    """Which rows of a batch hold a sequence."""
    return batch.ids != FILL_ID


def group_of(batch, ds) -> int:
    """The bucket of a bucketed batch (0 for a padded one)."""
    return int(np.searchsorted(ds.boundaries, batch.lengths[real(batch)].max()))


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
@pytest.mark.parametrize("name", CASES)
def test_one_shape_per_bucket_and_fill_rows_are_all_padding(h5_dataset, pq_dataset, fmt, name):
    ds = h5_dataset if fmt == "hdf5" else pq_dataset
    kw = {**CASES[name][0], "seed": CASES[name][0].get("seed", 1), "epoch": 2}
    padded = kw.get("mode") == "padded"
    batches = list(ds.batches(static_shapes=True, **kw))
    assert len(batches) == ds.num_batches(static_shapes=True, **kw)
    shapes: dict[int, set] = {}
    filled: list[int] = []
    for batch in batches:
        b, length = batch.mask.shape
        key = 0 if padded else group_of(batch, ds)
        shapes.setdefault(key, set()).add(batch.x.shape)
        assert length == ds.boundaries[-1 if padded else key]
        np.testing.assert_array_equal(batch.mask, np.arange(length) < batch.lengths[:, None])
        assert not batch.x[~batch.mask].any() and not batch.y[~batch.mask].any()
        keep = real(batch)
        n = int(keep.sum())
        assert keep[:n].all() and not keep[n:].any()  # fill rows come last
        assert not batch.lengths[n:].any() and not batch.mask[n:].any()
        assert batch.num_sequences == n and batch.num_timesteps == batch.lengths.sum()
        if n < b:
            filled.append(key)
        if "max_timesteps" in kw:
            assert b == kw["max_timesteps"] // length
        else:
            assert b == kw["batch_size"]
    assert all(len(s) == 1 for s in shapes.values())
    assert len(filled) == len(set(filled))  # only a group's last batch is filled
    assert len({s for ss in shapes.values() for s in ss}) <= (1 if padded else len(ds.boundaries))
    ids = np.concatenate([b.ids[real(b)] for b in batches])
    assert len(set(ids.tolist())) == len(ids)  # none twice
    if not kw.get("drop_remainder"):
        np.testing.assert_array_equal(np.sort(ids), np.arange(ds.num_sequences))  # none lost
    else:
        assert not filled


@pytest.mark.parametrize("name", [n for n, (_, ref) in CASES.items() if ref is not None])
def test_without_fill_rows_the_batches_of_pad_to_bucket(h5_dataset, name):
    static_kw, reference_kw = CASES[name]
    static = list(h5_dataset.batches(static_shapes=True, **static_kw))
    reference = list(h5_dataset.batches(**reference_kw))
    assert len(static) == len(reference)
    for s, r in zip(static, reference, strict=True):
        keep = real(s)
        np.testing.assert_array_equal(s.ids[keep], r.ids)
        np.testing.assert_array_equal(s.lengths[keep], r.lengths)
        width = r.x.shape[1]
        np.testing.assert_array_equal(s.x[keep, :width], r.x)
        np.testing.assert_array_equal(s.y[keep, :width], r.y)
        assert not s.x[:, width:].any()


def test_plan_reports_the_fill_rows_that_batches_yields(pq_dataset):
    for kw in (dict(batch_size=16), dict(max_timesteps=700), dict(mode="padded", batch_size=32)):
        plan = pq_dataset.plan(static_shapes=True, seed=4, **kw)
        got = list(pq_dataset.batches(static_shapes=True, seed=4, **kw))
        assert len(plan) == len(got)
        assert any((ids == FILL_ID).any() for ids, _ in plan)
        for (ids, lengths), batch in zip(plan, got, strict=True):
            np.testing.assert_array_equal(ids, batch.ids)
            np.testing.assert_array_equal(lengths, batch.lengths)


def test_start_skips_batches_exactly(h5_dataset):
    full = list(h5_dataset.batches(batch_size=16, static_shapes=True, seed=3))
    rest = list(h5_dataset.batches(batch_size=16, static_shapes=True, seed=3, start=7))
    assert len(rest) == len(full) - 7
    for p, q in zip(full[7:], rest, strict=True):
        np.testing.assert_array_equal(p.ids, q.ids)
        assert p.x.shape == q.x.shape


def test_a_budget_below_the_longest_padded_length_is_refused(h5_dataset):
    longest = h5_dataset.boundaries[-1]
    for mode in ("bucketed", "padded"):
        with pytest.raises(SpecError, match=f"max_timesteps must be >= {longest}.*padded"):
            next(h5_dataset.batches(mode, max_timesteps=longest - 1, static_shapes=True))


@pytest.mark.parametrize("kw, match", [
    (dict(static_shapes=True, same_length=True), "static_shapes cannot be combined"),
    (dict(static_shapes=1), "static_shapes"),
])
def test_bad_static_options(kw, match):
    with pytest.raises(SpecError, match=match):
        BatchConfig(**kw)


def test_to_dict_writes_static_shapes_only_when_set():
    """Runs recorded before the field existed compare equal to a resumed run's config."""
    old = BatchConfig(batch_size=4).to_dict()
    assert "static_shapes" not in old
    assert BatchConfig(**old) == BatchConfig(batch_size=4)
    new = BatchConfig(batch_size=4, static_shapes=True).to_dict()
    assert new["static_shapes"] is True
    assert BatchConfig(**new) == BatchConfig(batch_size=4, static_shapes=True)


def test_pad_fills_with_whole_padding_rows():
    lengths = [3, 5, 2]
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    total = int(offsets[-1])
    seqs = Sequences(np.arange(total * 2, dtype=np.float32).reshape(total, 2) + 1,
                     np.ones(total, np.uint8), offsets, np.array([10, 11, 12]))
    batch = Group.of([seqs]).pad(np.array([2, 0]), pad_to=6, size=5)
    assert batch.x.shape == (5, 6, 2) and batch.x.dtype == np.float32
    np.testing.assert_array_equal(batch.ids, [12, 10, -1, -1, -1])
    np.testing.assert_array_equal(batch.lengths, [2, 3, 0, 0, 0])
    assert batch.lengths.dtype == np.int32 and batch.ids.dtype == np.int64
    assert not batch.x[2:].any() and not batch.y[2:].any() and not batch.mask[2:].any()
    np.testing.assert_array_equal(batch.x[1, :3], seqs.sequence(0)[0])
    plain = Group.of([seqs]).pad(np.array([2, 0]), pad_to=6)
    assert plain.x.shape == (2, 6, 2) and batch.num_sequences == plain.num_sequences == 2
