"""`seqdata.torch.BatchDataset` and `loader`: the epoch split between DataLoader workers
in `Dataset.batches`' order, exact resume, and `pad_collate` for rows of variable length."""

from __future__ import annotations

import itertools
import os
import pickle
import shutil
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

import seqdata.store.shards
import seqdata.torch as st
from seqdata import BatchConfig, ShardError, SpecError, open_dataset
from seqdata.torch import BatchDataset, loader, pad_collate

CONFIGS = {
    "bucketed budget": BatchConfig(max_timesteps=800, seed=3),
    "padded": BatchConfig("padded", batch_size=16, seed=4),
}


def assert_same_batches(got: list[dict], expected: list) -> None:
    """Tensors ``got`` hold exactly the numpy batches ``expected``, in order."""
    assert len(got) == len(expected)
    for t, batch in zip(got, expected, strict=True):
        for name in st.FIELDS:
            np.testing.assert_array_equal(t[name].numpy(), getattr(batch, name))


def ids_of(batches) -> list[int]:
    """The ids of dicts of tensors or of `Batch`es, in order."""
    return [int(i) for b in batches for i in (b["ids"] if isinstance(b, dict) else b.ids)]


@pytest.fixture(params=["hdf5", "parquet"])
def dataset(request, h5_dataset, pq_dataset):
    return h5_dataset if request.param == "hdf5" else pq_dataset


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_workers_split_the_epoch_in_the_datasets_order(dataset, case, workers):
    config = CONFIGS[case]
    data = BatchDataset(dataset, config)
    assert isinstance(data, IterableDataset)
    got = list(DataLoader(data, batch_size=None, num_workers=workers))
    assert_same_batches(got, list(dataset.batches(config)))
    assert sorted(ids_of(got)) == list(range(dataset.num_sequences))  # no duplicate, no gap


def test_loader_yields_the_same_batches_with_and_without_workers(pq_dataset):
    config = CONFIGS["bucketed budget"]
    expected = list(pq_dataset.batches(config))
    for workers in (0, 2):
        got = list(loader(BatchDataset(pq_dataset.root, config), num_workers=workers))
        assert_same_batches(got, expected)


def test_a_worker_pads_only_its_own_batches(h5_dataset, monkeypatch):
    config = CONFIGS["padded"]
    padded = []
    original = h5_dataset.batches

    def counting(cfg, *, select=None, **options):
        for batch in original(cfg, select=select, **options):
            padded.append(batch)
            yield batch

    monkeypatch.setattr(h5_dataset, "batches", counting)
    monkeypatch.setattr(st, "_worker", lambda: (1, 2))
    got = list(BatchDataset(h5_dataset, config))
    expected = list(original(config))
    assert len(padded) == len(got) == len(expected[1::2])
    assert_same_batches(got, expected[1::2])


def test_pin_memory_is_accepted(h5_dataset):
    config = CONFIGS["padded"]
    expected = list(h5_dataset.batches(config))
    with warnings.catch_warnings():
        # CPU-only torch warns that there is nothing to pin into, and does not pin.
        warnings.simplefilter("ignore")
        got = list(DataLoader(BatchDataset(h5_dataset, config), batch_size=None,
                              num_workers=2, pin_memory=True))
    assert_same_batches(got, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # `loader` pins only where it can: no warning
        got = list(loader(BatchDataset(h5_dataset, config), num_workers=2, pin_memory=True))
    assert_same_batches(got, expected)
    assert all(t["x"].is_pinned() for t in got) == st._can_pin()


def test_the_class_is_made_once_and_instances_pickle(h5_dataset):
    assert st.BatchDataset is BatchDataset and "BatchDataset" in dir(st)
    data = BatchDataset(h5_dataset, CONFIGS["padded"])
    next(iter(data))
    copy = pickle.loads(pickle.dumps(data))
    assert type(copy) is BatchDataset
    assert copy.state_dict() == data.state_dict() == {"epoch": 0, "start": 1}
    assert_same_batches(list(copy), list(h5_dataset.batches(CONFIGS["padded"], start=1)))


def test_spawned_workers_reopen_the_dataset(pq_dataset):
    config = CONFIGS["padded"]
    data = BatchDataset(pq_dataset.root, config)
    got = list(loader(data, num_workers=1, multiprocessing_context="spawn"))
    assert_same_batches(got, list(pq_dataset.batches(config)))
    assert data.state_dict() == {"epoch": 1, "start": 0}


def test_len_is_what_the_next_pass_yields(h5_dataset):
    config = CONFIGS["bucketed budget"]
    data = BatchDataset(h5_dataset, config)
    n = h5_dataset.num_batches(config)
    assert len(data) == n
    for _ in itertools.islice(data, 3):
        pass
    assert len(data) == n - 3
    assert len(loader(data, num_workers=2)) == n - 3


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_gives_the_rest_of_the_epoch(dataset, workers):
    config = CONFIGS["bucketed budget"]
    expected = list(dataset.batches(config))
    first = BatchDataset(dataset.root, config)
    head = list(itertools.islice(loader(first, num_workers=workers), 5))
    state = first.state_dict()
    assert state == {"epoch": 0, "start": 5}
    second = BatchDataset(dataset.root, config)
    second.load_state_dict(state)
    tail = list(loader(second, num_workers=workers))
    assert_same_batches(head + tail, expected)
    assert second.state_dict() == {"epoch": 1, "start": 0}


def test_resume_without_a_loader_and_without_workers(h5_dataset):
    config = CONFIGS["padded"]
    expected = list(h5_dataset.batches(config))
    first = BatchDataset(h5_dataset, config)
    head = list(itertools.islice(DataLoader(first, batch_size=None), 4))
    second = BatchDataset(h5_dataset, config)
    second.load_state_dict(first.state_dict())
    assert_same_batches(head + list(second), expected)


def test_a_complete_epoch_moves_on_to_the_next(h5_dataset):
    config = CONFIGS["bucketed budget"]
    data = BatchDataset(h5_dataset, config)
    first = list(loader(data, num_workers=2))
    assert data.state_dict() == {"epoch": 1, "start": 0}
    assert_same_batches(list(loader(data, num_workers=2)),
                        list(h5_dataset.batches(config, epoch=1)))
    assert ids_of(first) != ids_of(h5_dataset.batches(config, epoch=1))
    data.set_epoch(0)
    assert_same_batches(list(data), list(h5_dataset.batches(config)))
    assert data.state_dict() == {"epoch": 1, "start": 0}


def test_set_epoch_reaches_plain_dataloader_workers(pq_dataset):
    config = CONFIGS["padded"]
    data = BatchDataset(pq_dataset, config)
    data.set_epoch(3)
    got = list(DataLoader(data, batch_size=None, num_workers=2))
    assert_same_batches(got, list(pq_dataset.batches(config, epoch=3)))


def take_as_worker(monkeypatch, data, worker: int, workers: int, n: int):
    """``n`` batches of ``data`` as worker ``worker`` of ``workers``, and its state then."""
    monkeypatch.setattr(st, "_worker", lambda: (worker, workers))
    got = list(itertools.islice(data, n))
    return got, data.state_dict()


def test_per_worker_states_resume_each_worker_as_statefuldataloader_does(h5_dataset,
                                                                         monkeypatch):
    # torchdata's StatefulDataLoader asks each worker's dataset for its state after the
    # batches it handed out and loads it back into the same worker on resume.
    config = CONFIGS["bucketed budget"]
    expected = list(h5_dataset.batches(config, start=2))
    workers, states, got = 3, [], {}
    for k, n in enumerate((3, 2, 2)):  # 7 batches from start 2 consumed: 2..8
        data = BatchDataset(h5_dataset, config, start=2)
        got[k], state = take_as_worker(monkeypatch, data, k, workers, n)
        states.append(state)
    assert states[0] == {"epoch": 0, "start": 2, "next": 11, "workers": 3}
    for k, state in enumerate(states):
        data = pickle.loads(pickle.dumps(BatchDataset(h5_dataset, config, start=2)))
        monkeypatch.setattr(st, "_worker", lambda k=k: (k, workers))
        data.load_state_dict(state)
        got[k] += list(data)
        assert data.state_dict() == {"epoch": 1, "start": 0, "next": k, "workers": 3}
    for k in range(workers):
        assert_same_batches(got[k], expected[k::workers])


class LoadState:
    """A worker_init_fn loading each worker's own state (as StatefulDataLoader does)."""

    def __init__(self, states: list[dict]) -> None:
        self.states = states

    def __call__(self, worker_id: int) -> None:
        get_worker_info().dataset.load_state_dict(self.states[worker_id])


def test_worker_states_resume_in_real_workers(pq_dataset):
    config = CONFIGS["padded"]
    expected = list(pq_dataset.batches(config))
    states = [{"epoch": 0, "start": 0, "next": 4, "workers": 2},
              {"epoch": 0, "start": 0, "next": 5, "workers": 2}]
    got = list(DataLoader(BatchDataset(pq_dataset, config), batch_size=None, num_workers=2,
                          worker_init_fn=LoadState(states)))
    assert_same_batches(got, expected[4:])


def test_bad_arguments_are_one_line_errors(h5_dataset, monkeypatch):
    with pytest.raises(SpecError, match="source must be a dataset directory"):
        BatchDataset(42)
    with pytest.raises(SpecError, match="max_timesteps must be >= "):
        BatchDataset(h5_dataset, max_timesteps=5)
    with pytest.raises(SpecError, match="unknown batching options"):
        BatchDataset(h5_dataset, bacth_size=4)
    data = BatchDataset(h5_dataset)
    with pytest.raises(SpecError, match="epoch must be an integer >= 0"):
        data.set_epoch(-1)
    with pytest.raises(SpecError, match="state must be a dict with 'epoch' and 'start'"):
        data.load_state_dict({"epoch": 0})
    with pytest.raises(SpecError, match=r"state\['start'\] must be an integer"):
        data.load_state_dict({"epoch": 0, "start": -2})
    with pytest.raises(SpecError, match=r"state\['workers'\] must be 1"):
        data.load_state_dict({"epoch": 0, "start": 0, "next": 1, "workers": 2})
    monkeypatch.setattr(st, "_worker", lambda: (0, 2))
    with pytest.raises(SpecError, match=r"must be a batch of worker 0: the state is worker 1"):
        data.load_state_dict({"epoch": 0, "start": 0, "next": 1, "workers": 2})
    monkeypatch.undo()
    with pytest.raises(SpecError, match=r"dataset must be a seqdata\.torch\.BatchDataset"):
        loader(h5_dataset)
    with pytest.raises(SpecError, match="batch_size is not a loader option"):
        loader(data, batch_size=8)
    with pytest.raises(SpecError, match="persistent_workers needs num_workers >= 1"):
        loader(data, persistent_workers=True)
    with pytest.raises(SpecError, match="in_order must be true"):
        loader(data, num_workers=2, in_order=False)
    with pytest.raises(SpecError, match="num_workers must be an integer >= 0"):
        loader(data, num_workers=-1)


# --- loader workers: persistent, shared memory, shards checked once ---------------------


class StartLog:
    """A worker_init_fn that appends a line to ``path`` each time a worker starts."""

    def __init__(self, path) -> None:
        self.path = path

    def __call__(self, worker_id: int) -> None:
        with open(self.path, "a") as f:
            f.write(f"{worker_id}\n")

    def count(self) -> int:
        return len(self.path.read_text().split()) if self.path.exists() else 0


def test_persistent_workers_go_on_to_the_next_epoch_in_order(h5_dataset, tmp_path):
    config = CONFIGS["bucketed budget"]
    data = BatchDataset(h5_dataset, config)
    starts = StartLog(tmp_path / "starts")
    batches = loader(data, num_workers=2, persistent_workers=True, worker_init_fn=starts)
    for epoch in range(3):
        assert_same_batches(list(batches), list(h5_dataset.batches(config, epoch=epoch)))
        assert data.state_dict() == {"epoch": epoch + 1, "start": 0}
    assert starts.count() == 2  # started once


def test_persistent_workers_follow_partial_passes_set_epoch_and_resume(pq_dataset, tmp_path):
    config = CONFIGS["padded"]
    data = BatchDataset(pq_dataset, config)
    starts = StartLog(tmp_path / "starts")
    batches = loader(data, num_workers=2, persistent_workers=True, worker_init_fn=starts)
    head = list(itertools.islice(batches, 3))  # a partial pass: its workers are ahead
    assert data.state_dict() == {"epoch": 0, "start": 3}
    assert_same_batches(head + list(batches), list(pq_dataset.batches(config)))
    assert_same_batches(list(batches), list(pq_dataset.batches(config, epoch=1)))
    assert starts.count() == 4  # new workers after the partial pass, not after epoch 0
    data.set_epoch(5)
    assert_same_batches(list(batches), list(pq_dataset.batches(config, epoch=5)))
    data.load_state_dict({"epoch": 2, "start": 4})
    assert_same_batches(list(batches), list(pq_dataset.batches(config, epoch=2, start=4)))
    assert data.state_dict() == {"epoch": 3, "start": 0}
    assert starts.count() == 8


@pytest.fixture
def ring_counts(monkeypatch):
    """How many batches the main process took from rings and from the pipe."""
    counts = {"ring": 0, "pipe": 0}
    shared, packed = st._Shared.tensors, st._Packed.tensors

    def from_ring(self):
        counts["ring"] += 1
        return shared(self)

    def from_pipe(self):
        counts["pipe"] += 1
        return packed(self)

    monkeypatch.setattr(st._Shared, "tensors", from_ring)
    monkeypatch.setattr(st._Packed, "tensors", from_pipe)
    return counts


def test_forked_workers_hand_batches_over_in_shared_memory(h5_dataset, ring_counts):
    config = CONFIGS["bucketed budget"]
    expected = list(h5_dataset.batches(config))
    kept = []
    for n, (t, batch) in enumerate(zip(loader(BatchDataset(h5_dataset, config), num_workers=2),
                                       expected, strict=True)):
        assert_same_batches([t], [batch])
        if n % 7 == 0:
            kept.append((t, batch))  # held: its memory is not reused under it
    assert_same_batches([t for t, _ in kept], [b for _, b in kept])
    assert ring_counts == {"ring": len(expected), "pipe": 0}
    # A consumer that keeps every batch fills the rings: the rest cross the pipe.
    data = BatchDataset(h5_dataset, config)
    ring = st._largest_batch(data) * (2 + 3)  # the size of a ring with prefetch_factor 2
    assert sum(st._layout(*b.x.shape)[1] for b in expected) > 2 * ring
    got = list(loader(data, num_workers=2, prefetch_factor=2))
    assert_same_batches(got, expected)
    assert ring_counts["pipe"] > 0


def test_a_ring_never_overwrites_a_batch_in_use(h5_dataset):
    batches = list(h5_dataset.batches(CONFIGS["padded"]))
    sizes = [st._layout(*b.x.shape)[1] for b in batches]
    token = next(st._TOKENS)
    ring = st._Ring(token, 0, sum(sizes[:3]))  # room for the first three batches
    st._RINGS[token] = [ring]
    try:
        held = [ring.put(batch).tensors() for batch in batches[:3]]
        assert ring.put(batches[3]) is None  # full of batches in use: the pipe instead
        assert_same_batches(held, batches[:3])
        del held[1]  # freed: its place is free again
        held.append(ring.put(batches[1]).tensors())
        assert_same_batches(held, [batches[0], batches[2], batches[1]])
        held.clear()
        for batch, size in zip(batches, sizes, strict=True):  # dropped at once: round it goes
            if size <= ring.size:
                assert_same_batches([ring.put(batch).tensors()], [batch])
    finally:
        del st._RINGS[token]


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_workers_pad_straight_into_their_ring(datasets, fmt, monkeypatch):
    """A worker's batch is padded in the ring's memory (`_Ring.reserve`) and sent from
    there: no copy in `put`, unless the ring has no room, when new arrays go by pipe."""
    ds = open_dataset(datasets[fmt])
    config = CONFIGS["bucketed budget"]
    expected = list(ds.batches(config))
    token = next(st._TOKENS)
    ring = st._Ring(token, 1, 3 * st._largest_batch(BatchDataset(ds, config)))
    st._RINGS[token] = [None, ring]
    copies = []
    copyto = np.copyto
    monkeypatch.setattr(np, "copyto", lambda *a, **k: copies.append(1) or copyto(*a, **k))
    monkeypatch.setattr(st, "_worker", lambda: (1, 2))
    data = BatchDataset(ds, config)
    data._packed, data._ring = True, ring
    try:
        got = []
        for b in data:  # each dropped after its step: the ring always has room
            assert isinstance(b, st._Shared)
            got.append({k: v.clone() for k, v in b.tensors().items()})
        assert_same_batches(got, expected[1::2])
        assert not copies
        data.set_epoch(0)
        kept = [b.tensors() if isinstance(b, st._Shared) else b for b in data]
        # Kept in use: the ring fills up, and the rest crosses the pipe.
        assert any(isinstance(b, st._Packed) for b in kept)
        assert_same_batches([b.tensors() if isinstance(b, st._Packed) else b for b in kept],
                            expected[1::2])
    finally:
        del st._RINGS[token]


def test_parquet_workers_read_their_rows_from_the_pages_without_decoding(datasets,
                                                                         monkeypatch):
    """`loader` checks (and so decodes and maps) every shard before its workers start;
    forked workers then read their own rows from the Parquet pages, decoding nothing."""
    import pyarrow.parquet as pq

    ds = open_dataset(datasets["parquet"])
    config = CONFIGS["bucketed budget"]
    expected = list(open_dataset(datasets["parquet"]).batches(config))
    ds.check_unchecked()

    def no_decoding(*args, **kwargs):
        raise AssertionError("a worker decoded a shard")
    monkeypatch.setattr(pq, "read_table", no_decoding)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", no_decoding)
    assert_same_batches(list(loader(BatchDataset(ds, config), num_workers=2,
                                    multiprocessing_context="fork")), expected)


def test_decode_once_from_before_page_reads_still_runs_with_a_warning(pq_dataset):
    """``loader(decode_once=True)`` (what Parquet workers needed before they read pages)
    is now the default behaviour: old code gets the same batches and a warning to drop it."""
    config = CONFIGS["padded"]
    with pytest.warns(DeprecationWarning, match="decode_once.*no effect.*drop the argument"):
        got = list(loader(BatchDataset(pq_dataset, config), decode_once=True))
    assert_same_batches(got, list(pq_dataset.batches(config)))


def test_a_pass_made_ahead_is_used_only_where_it_fits(h5_dataset):
    config = CONFIGS["padded"]
    data = BatchDataset(h5_dataset, config)
    data._prepare = True  # as in a persistent loader worker: the next pass made ahead
    list(data)
    assert data._ahead.key == (1, 0, 1)
    assert_same_batches(list(data), list(h5_dataset.batches(config, epoch=1)))
    data.set_epoch(5)  # not the pass made ahead (epoch 2): dropped, made afresh
    assert_same_batches(list(data), list(h5_dataset.batches(config, epoch=5)))
    assert data.state_dict() == {"epoch": 6, "start": 0}


def test_pinning_copies_a_batch_out_of_its_ring_at_once(h5_dataset, monkeypatch):
    batch = next(h5_dataset.batches(CONFIGS["padded"]))
    token = next(st._TOKENS)
    ring = st._Ring(token, 0, st._layout(*batch.x.shape)[1])  # room for one batch
    st._RINGS[token] = [ring]
    empty = torch.empty  # no accelerator here: what the pinning thread does, unpinned
    monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **k: empty(*a, **k))
    try:
        pinned = ring.put(batch).pin_memory()
        assert ring.put(batch) is not None  # released at once: room again
        assert_same_batches([pinned], [batch])
    finally:
        del st._RINGS[token]


class NoChecks:
    """A worker_init_fn that fails any shard check in the worker."""

    def __call__(self, worker_id: int) -> None:
        def check(path, *args):
            raise AssertionError(f"worker {worker_id} checked {path} again")

        seqdata.store.shards.check_shard_bytes = check


def test_workers_check_no_shard_again(datasets, tmp_path):
    config = CONFIGS["padded"]
    path = shutil.copytree(datasets["parquet"], tmp_path / "d")
    data = BatchDataset(path, config)  # nothing checked yet in this process
    got = list(loader(data, num_workers=2, worker_init_fn=NoChecks()))
    assert_same_batches(got, list(open_dataset(path).batches(config)))


@pytest.mark.parametrize("persistent", [False, True])
def test_a_shard_replaced_after_its_check_is_still_caught(datasets, tmp_path, persistent):
    config = CONFIGS["padded"]
    path = shutil.copytree(datasets["hdf5"], tmp_path / "d")
    batches = loader(BatchDataset(path, config), num_workers=2,
                     persistent_workers=persistent)
    list(batches)  # every shard checked, by the main process, before the workers started
    # Every shard replaced by a damaged copy (persistent workers may have read the next
    # epoch's first window already, before the replacement: it is caught at a later read).
    for shard in path.glob("data/shard-*"):
        damaged = bytearray(shard.read_bytes())
        damaged[len(damaged) // 2] ^= 1
        (tmp_path / "new").write_bytes(damaged)
        os.replace(tmp_path / "new", shard)
    with pytest.raises(ShardError, match=r"shard-\d+\.h5 is damaged"):
        list(batches)


# --- pad_collate ------------------------------------------------------------------------


def test_pad_collate_pads_rows_of_any_form():
    x = np.random.default_rng(0).random((7, 5), dtype=np.float32)
    rows = [{"x": x[:3].tolist(), "y": [1, 0, 1], "id": 4, "length": 3},
            {"x": x[3:7], "y": np.array([0, 1, 1, 0], np.uint8), "id": np.int64(9)},
            {"x": torch.from_numpy(x[:0].copy()), "y": torch.zeros(0), "id": torch.tensor(2)}]
    b = pad_collate(rows)
    assert {k: (v.dtype, tuple(v.shape)) for k, v in b.items()} == {
        "x": (torch.float32, (3, 4, 5)), "y": (torch.uint8, (3, 4)),
        "mask": (torch.bool, (3, 4)), "lengths": (torch.int32, (3,)), "ids": (torch.int64, (3,))}
    assert b["lengths"].tolist() == [3, 4, 0] and b["ids"].tolist() == [4, 9, 2]
    assert b["mask"].tolist() == [[True] * 3 + [False], [True] * 4, [False] * 4]
    np.testing.assert_array_equal(b["x"][0, :3].numpy(), x[:3])
    np.testing.assert_array_equal(b["x"][1].numpy(), x[3:7])
    assert not b["x"][~b["mask"]].any() and b["y"][1].tolist() == [0, 1, 1, 0]
    assert sorted(pad_collate([{"x": [[0.0]]}])) == ["lengths", "mask", "x"]


def test_pad_collate_refuses_bad_rows():
    with pytest.raises(SpecError, match="rows must be a non-empty list"):
        pad_collate([])
    with pytest.raises(SpecError, match=r"rows\[1\] must be a mapping with 'x'"):
        pad_collate([{"x": [[1.0]]}, {"y": [1]}])
    with pytest.raises(SpecError, match=r"rows\[1\]\['x'\] must be \(length, 2\)"):
        pad_collate([{"x": [[1.0, 2.0]]}, {"x": [[1.0]]}])
    with pytest.raises(SpecError, match=r"rows\[0\]\['length'\] must be the length of its x"):
        pad_collate([{"x": [[1.0]], "length": 2}])
    with pytest.raises(SpecError, match=r"rows\[0\]\['y'\] must be \(1,\) like its x"):
        pad_collate([{"x": [[1.0]], "y": [1, 0]}])
    with pytest.raises(SpecError, match=r"labels in 0..255"):
        pad_collate([{"x": [[1.0]], "y": [300]}])


@pytest.mark.parametrize("form", [None, "numpy", "torch"])
def test_hugging_face_rows_of_the_parquet_shards_through_pad_collate(pq_dataset, tmp_path,
                                                                     form):
    datasets = pytest.importorskip("datasets")
    files = [str(pq_dataset.shard_path(info)) for info in pq_dataset.shards]
    rows = datasets.Dataset.from_parquet(files, cache_dir=str(tmp_path))
    if form is not None:
        rows = rows.with_format(form)
    torch.manual_seed(0)
    batches = list(DataLoader(rows, batch_size=32, shuffle=True, collate_fn=pad_collate))
    ids = ids_of(batches)
    assert sorted(ids) == list(range(pq_dataset.num_sequences)) and ids != sorted(ids)
    every = pq_dataset.read_all()
    where = {int(i): k for k, i in enumerate(every.ids)}
    for b in batches:
        assert b["x"].dtype == torch.float32 and b["y"].dtype == torch.uint8
        assert torch.equal(b["mask"].sum(1), b["lengths"].long())
        assert not b["x"][~b["mask"]].any()
        for row, i in enumerate(b["ids"].tolist()):
            k = where[i]
            a, e = every.offsets[k], every.offsets[k + 1]
            n = int(b["lengths"][row])
            assert n == e - a
            np.testing.assert_array_equal(b["x"][row, :n].numpy(), every.x[a:e])
            np.testing.assert_array_equal(b["y"][row, :n].numpy(), every.y[a:e])
