"""Generation on a Dask cluster: one task per chunk, run by Dask's workers.

``build_dataset(..., scheduler=ADDRESS)`` (``seqdata generate --scheduler ADDRESS``) sends
the chunks to a running ``distributed`` scheduler, whose workers must all see the output
directory at the same path; ``scheduler="local:N"`` starts a ``LocalCluster`` of N worker
processes for the build and stops it after. Each task builds one chunk's shard into
``DIR/data`` (`seqdata.store.build.build_shard_task`) and returns its `ShardInfo`; the build
journals each as it arrives and publishes the card and the manifest when all are done,
as with local workers. Shard bytes depend on (spec, chunk) alone, so a Dask build is
byte-identical to a local one.

A task whose worker dies is run again on another (Dask reschedules it, up to its
``allowed-failures``); a task that raises is retried twice. A build that still cannot
finish raises OutputError naming the chunk, keeps what it wrote, and finishes with
``resume=True``. The build's lock on the directory is held by the process that runs the
build; Dask's workers, which may be on other machines, do not take it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from seqdata.errors import OutputError, SpecError
from seqdata.spec import LagSumSpec
from seqdata.store.manifest import ShardInfo

LOCAL = re.compile(r"local:(\d+)")
CONNECT_SECONDS = 20  # how long to try to reach a scheduler
RETRIES = 2  # a task that raises (not one whose worker dies: Dask reschedules those)
ShardResult = tuple[ShardInfo, np.ndarray]  # a shard's info and length counts


def check_scheduler(scheduler: str) -> str:
    """``scheduler`` if it is ``local:N`` (N >= 1) or looks like a scheduler's address."""
    match = LOCAL.fullmatch(scheduler) if isinstance(scheduler, str) else None
    if match and int(match.group(1)) >= 1:
        return scheduler
    if isinstance(scheduler, str) and not scheduler.startswith("local") and \
            re.fullmatch(r"[a-z]+://\S+|[\w.\-]+:\d+", scheduler):
        return scheduler
    raise SpecError(f"scheduler must be a Dask scheduler's address (tcp://HOST:PORT) or "
                    f"local:N with N >= 1, got {scheduler!r}")


def check_reachable(scheduler: str) -> None:
    """Raise OutputError unless the scheduler at ``scheduler`` (not ``local:N``) answers:
    before a build prepares its directory, so that an unreachable cluster changes
    nothing."""
    if not LOCAL.fullmatch(scheduler):
        with _client(scheduler):
            pass


@contextlib.contextmanager
def _client(scheduler: str) -> Iterator:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SpecError("a Dask scheduler needs the dask extra: pip install "
                        "'seqdata[dask]'") from None
    local = LOCAL.fullmatch(scheduler)
    try:
        if local:
            cluster = LocalCluster(n_workers=int(local.group(1)), threads_per_worker=1,
                                   processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
        client = Client(cluster if local else scheduler, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, RuntimeError) as e:
        what = "start the Dask cluster" if local else "reach the Dask scheduler at"
        raise OutputError(f"cannot {what} {scheduler}: {e}") from None
    try:
        yield client
    finally:
        client.close()
        if local:
            cluster.close()


def run_chunks(scheduler: str, task: Callable[..., ShardResult], spec: LagSumSpec,
               chunks: list[int], fmt: str, boundaries: tuple[int, ...],
               out: Path) -> Iterator[ShardResult]:
    """``task(spec, chunk, fmt, boundaries, out)`` of each chunk on the cluster: their
    results in the order they finish."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    with _client(scheduler) as client:
        futures = {client.submit(task, spec, c, fmt, boundaries, str(out),
                                 retries=RETRIES, pure=False): c for c in chunks}
        try:
            for future in as_completed(futures):
                try:
                    yield future.result()
                except KilledWorker:
                    raise OutputError(
                        f"chunk {futures[future]} of {out} could not be built on the Dask "
                        f"cluster at {scheduler}: each worker that ran it died; run again "
                        f"with resume=True to finish the build") from None
                except (OSError, OutputError) as e:
                    raise OutputError(
                        f"chunk {futures[future]} of {out} failed on the Dask cluster at "
                        f"{scheduler} ({RETRIES + 1} tries): {e}; run again with "
                        f"resume=True to finish the build") from None
        finally:
            client.cancel(list(futures))
