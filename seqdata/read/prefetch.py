"""`prefetch`: convert items on a loader thread a few items ahead of their consumer.

The bridges use it to copy batches onto a device while the model trains on the previous
ones. numpy copies, file reads and device transfers release the GIL, so the loader runs
alongside the training step.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from seqdata.checks import check_int

In = TypeVar("In")
Out = TypeVar("Out")


def prefetch(items: Iterable[In], convert: Callable[[In], Out], *, depth: int = 2,
             name: str = "seqdata-prefetch") -> Iterator[Out]:
    """``convert(item)`` of each item, in order, made on a thread up to ``depth`` ahead.

    An error of the loader (in ``items`` or ``convert``) is raised here, at the item where
    it happened; closing the iterator early stops the loader.

    >>> list(prefetch(range(4), lambda i: i * i))
    [0, 1, 4, 9]
    """
    check_int("depth", depth, 1)
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def load() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ready.put(convert(item))
        except BaseException as e:  # handed to the consumer, which re-raises it
            ready.put(e)
        ready.put(None)

    thread = threading.Thread(target=load, name=name, daemon=True)
    thread.start()
    try:
        while (out := ready.get()) is not None:
            if isinstance(out, BaseException):
                raise out
            yield out
    finally:
        stop.set()
        while thread.is_alive():  # unblock a loader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)
