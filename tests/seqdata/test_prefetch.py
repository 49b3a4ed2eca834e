"""The loader thread the bridges share: order, errors where they happen, early stop."""

from __future__ import annotations

import threading

import pytest

from seqdata import BatchConfig, BatchStream
from seqdata.errors import ShardError, SpecError
from seqdata.read.prefetch import prefetch


def test_items_come_converted_in_order_from_another_thread():
    seen = []

    def convert(i):
        seen.append(threading.current_thread().name)
        return i * 2

    assert list(prefetch(range(50), convert, depth=3, name="loader")) == list(range(0, 100, 2))
    assert set(seen) == {"loader"}


def test_the_loaders_error_is_raised_where_it_happened():
    def items():
        yield 1
        yield 2
        raise ShardError("shard s.h5 is damaged")

    got = prefetch(items(), str)
    assert next(got) == "1" and next(got) == "2"
    with pytest.raises(ShardError, match="damaged"):
        next(got)


def test_closing_early_stops_the_loader(h5_dataset):
    before = set(threading.enumerate())
    stream = BatchStream(h5_dataset, BatchConfig(batch_size=4))  # endless
    taken = prefetch(stream, lambda b: b.x.shape, depth=1)
    assert next(taken)[0] == 4
    started = set(threading.enumerate()) - before
    assert started  # the loader (and its read-ahead) run on threads of their own
    taken.close()  # returns (not stuck on the loader's full queue), and the loader ends
    # Threads of earlier tests may end meanwhile: only those started here must be gone.
    assert not [t for t in started if t.is_alive()]


def test_depth_must_be_positive():
    with pytest.raises(SpecError, match="depth must be an integer >= 1, got 0"):
        next(prefetch([1], str, depth=0))
