"""One global plan split by rank: equal steps on every rank, every sequence once, and a
run stopped at global batch k resumes on any number of ranks with the same batches."""

from __future__ import annotations

import numpy as np
import pytest

from seqdata import BatchConfig, SpecError, open_dataset

CONFIGS = {
    "bucketed count": BatchConfig(batch_size=24, seed=5),
    "bucketed budget": BatchConfig(max_timesteps=1500, seed=6),
    "padded": BatchConfig("padded", batch_size=40, seed=7),
    "static shapes": BatchConfig(batch_size=24, seed=8, static_shapes=True),
}


def rank_batches(ds, config, ranks, **options):
    return [list(ds.batches(config, rank=r, num_ranks=ranks, **options)) for r in range(ranks)]


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
@pytest.mark.parametrize("case", sorted(CONFIGS))
@pytest.mark.parametrize("ranks", [2, 3, 5])
def test_every_rank_steps_alike_and_every_sequence_comes_once(datasets, fmt, case, ranks):
    ds = open_dataset(datasets[fmt])
    config = CONFIGS[case]
    whole = list(ds.batches(config))
    shares = rank_batches(ds, config, ranks)
    assert [len(s) for s in shares] == [len(whole)] * ranks  # equal steps
    assert ds.num_batches(config, rank=1, num_ranks=ranks) == len(whole)
    for step, batch in enumerate(whole):
        parts = [s[step] for s in shares]
        # The step's parts hold the global batch's rows, in order, and one shape.
        real = np.concatenate([p.ids[p.ids >= 0] for p in parts])
        np.testing.assert_array_equal(real, batch.ids[batch.ids >= 0])
        assert len({p.x.shape for p in parts}) == 1
        assert parts[0].x.shape[1] >= batch.lengths.max()
        counts = [int((p.ids >= 0).sum()) for p in parts]
        assert max(counts) - min(counts) <= 1
        for p in parts:  # values as in the global batch; fill rows all masked
            rows = {int(i): k for k, i in enumerate(batch.ids)}
            for k, i in enumerate(p.ids):
                if i < 0:
                    assert not p.mask[k].any() and p.lengths[k] == 0 and not p.x[k].any()
                    continue
                n = p.lengths[k]
                np.testing.assert_array_equal(p.x[k, :n], batch.x[rows[int(i)], :n])
                np.testing.assert_array_equal(p.y[k, :n], batch.y[rows[int(i)], :n])
                assert p.mask[k, :n].all() and not p.mask[k, n:].any()
    ids = np.concatenate([b.ids for s in shares for b in s])
    ids = ids[ids >= 0]
    assert len(ids) == len(np.unique(ids)) == ds.num_sequences


def test_one_rank_is_todays_batches(h5_dataset):
    config = CONFIGS["bucketed budget"]
    for a, b in zip(h5_dataset.batches(config), h5_dataset.batches(config, rank=0,
                                                                   num_ranks=1), strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.ids, b.ids)
    assert "rank" not in config.to_dict() and "num_ranks" not in config.to_dict()


@pytest.mark.parametrize("after", [1, 3])
def test_stopped_on_two_ranks_resumes_on_any_number(pq_dataset, after):
    """Global batch k is the same on any number of ranks: stop at k on 2, resume at k on
    1 or 3; the ids trained from k on are the uninterrupted run's."""
    config = BatchConfig(max_timesteps=1500, seed=11, epoch=1)
    k = 4
    uninterrupted = [b.ids for b in pq_dataset.batches(config)]
    before = [s[:k] for s in rank_batches(pq_dataset, config, 2)]
    resumed = rank_batches(pq_dataset, config, after, start=k)
    assert [len(s) for s in resumed] == [len(uninterrupted) - k] * after
    for step, ids in enumerate(uninterrupted):
        parts = [s[step] for s in before] if step < k else [s[step - k] for s in resumed]
        got = np.concatenate([p.ids for p in parts])
        np.testing.assert_array_equal(got[got >= 0], ids)


def test_ranks_split_between_loader_workers(datasets):
    """The bridges take the same options: rank 1 of 2 through 2 DataLoader workers."""
    from torch.utils.data import DataLoader

    import seqdata.torch

    ds = open_dataset(datasets["hdf5"])
    config = BatchConfig(max_timesteps=1500, seed=12, rank=1, num_ranks=2)
    expected = list(ds.batches(config))
    plain = list(DataLoader(seqdata.torch.BatchDataset(ds, config), batch_size=None,
                            num_workers=2))
    # `loader`'s rings are sized for a rank's part: every batch fits.
    ring = seqdata.torch._largest_batch(seqdata.torch.BatchDataset(ds, config))
    assert max(seqdata.torch._layout(*b.x.shape)[1] for b in expected) <= ring
    assert ring < seqdata.torch._largest_batch(seqdata.torch.BatchDataset(ds, config,
                                                                          num_ranks=1, rank=0))
    shared = list(seqdata.torch.loader(seqdata.torch.BatchDataset(ds, config), num_workers=2))
    for got in (plain, shared):
        assert len(got) == len(expected)
        for t, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(t["ids"].numpy(), b.ids)
            np.testing.assert_array_equal(t["x"].numpy(), b.x)


def test_bad_ranks_are_one_line_errors(h5_dataset):
    with pytest.raises(SpecError, match=r"rank must be in 0\.\.1 \(num_ranks=2\), got 2"):
        BatchConfig(rank=2, num_ranks=2)
    with pytest.raises(SpecError, match="num_ranks must be an integer >= 1"):
        BatchConfig(num_ranks=0)
