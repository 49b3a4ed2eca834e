"""Datasets at fsspec URLs (``s3://``, ``gs://``, ``file://``, ``memory://``, ...).

The fast read path stays local (pathlib, ``preadv``, ``mmap``): a URL's manifest and card
are fetched into a cache directory and validated there, and each shard is fetched into
it the first time it is read, checked against the manifest's size and SHA-256 before it
is renamed into place, while a few fetches run ahead in the order the reader will read.
A build for a URL is made in a local staging directory (so it resumes as a local one
does), then `publish` uploads every shard, the card, and the manifest last: a URL without
a manifest is an unfinished dataset. fsspec is imported only when a URL is used.

The cache (``cache=``, else ``$SEQDATA_CACHE``, else ``~/.cache/seqdata``)::

    <sha256(url)[:16]>/<sha256(manifest.json)[:16]>/   manifest.json, README.md, data/...
    <sha256(url)[:16]>/build/                          a build's staging directory

A changed manifest gets a directory of its own, so a shard cached for another version
of a dataset is never read for this one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from seqdata.errors import ManifestError, OutputError, RemoteError, SeqdataError, ShardError
from seqdata.store.atomic import TMP_NAME, atomic_output, temporary_path, write_bytes_atomic
from seqdata.store.cache import SCRATCH, STAGING, hold, remember_url, url_dir
from seqdata.store.card import CARD_NAME, MAX_CARD_BYTES
from seqdata.store.manifest import (
    DATA_DIR,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Manifest,
    read_manifest,
)
from seqdata.store.shards import check_shard_bytes

URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
FETCH_AHEAD = 4  # shard fetches kept running ahead of a reader (docs/SCALING.md)
UPLOADS = 8  # shard uploads at a time
T = TypeVar("T")
R = TypeVar("R")


def is_url(location: object) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) rather than a local path."""
    return isinstance(location, str) and URL.match(location) is not None


def join(location: str | os.PathLike[str], rel: str) -> str:
    """``rel`` (a path inside a dataset, such as ``data/shard-00000.h5``) at ``location``."""
    if is_url(location):
        return f"{str(location).rstrip('/')}/{rel}"
    return str(Path(location) / rel)


def staging_dir(url: str) -> Path:
    """Where a build for ``url`` is made before it is uploaded (kept until it is)."""
    return url_dir(url) / STAGING


def renamed(error: SeqdataError, local: Path, url: str) -> SeqdataError:
    """``error`` again, naming ``url`` where it named the local copy ``local``."""
    return type(error)(str(error).replace(str(local), url))


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class Remote:
    """A location at a URL: its fsspec file system and the few operations seqdata needs.

    fsspec back ends raise their own exception types; every operation here raises
    OSError (FileNotFoundError for a missing file) or nothing.
    """

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        try:
            import fsspec
        except ImportError:
            raise RemoteError(f"{url} is a URL, and URLs need fsspec: pip install "
                              f"'seqdata[remote]'") from None
        try:
            self.fs, self.path = fsspec.core.url_to_fs(self.url)
        except ImportError as e:  # a known protocol whose package is missing (s3fs, gcsfs)
            raise RemoteError(f"cannot open {url}: {e}") from None
        except ValueError:
            scheme = url.split("://", 1)[0]
            raise RemoteError(f"cannot open {url}: fsspec knows no protocol {scheme!r} (a "
                              f"store's package adds its own: s3fs for s3://, gcsfs for "
                              f"gs://, adlfs for az://)") from None
        from fsspec.implementations.local import LocalFileSystem
        from fsspec.implementations.memory import MemoryFileSystem

        # Where a rename is atomic, an upload goes to a temporary name first; an object
        # store's single PUT is atomic by itself.
        self.renames = isinstance(self.fs, LocalFileSystem | MemoryFileSystem)
        # A file:// URL's directory (where a local path may name the same place).
        self.local_dir = Path(self.path) if isinstance(self.fs, LocalFileSystem) else None

    def where(self, rel: str) -> str:
        """The URL of ``rel``."""
        return join(self.url, rel)

    def _path(self, rel: str) -> str:
        return posixpath.join(self.path, rel)

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return function(*args)
        except OSError:
            raise
        except Exception as e:
            raise OSError(_reason(e)) from e

    def files(self) -> list[str]:
        """Every file below the URL, relative to it."""
        found = self._call(self.fs.find, self.path)
        prefix = self.path.rstrip("/") + "/"
        return sorted(f[len(prefix):] for f in found if f.startswith(prefix))

    def names(self, rel: str) -> set[str]:
        """The names in directory ``rel`` (none if it is not there)."""
        try:
            listed = self._call(self.fs.ls, self._path(rel), False)
        except FileNotFoundError:
            return set()
        return {posixpath.basename(str(p).rstrip("/")) for p in listed}

    def read(self, rel: str, limit: int) -> bytes:
        """The bytes of ``rel``, at most ``limit + 1`` of them (more means too many)."""
        def read() -> bytes:
            with self.fs.open(self._path(rel), "rb") as f:
                return f.read(limit + 1)
        return self._call(read)

    def get(self, rel: str, local: Path) -> None:
        """Download ``rel`` to ``local``."""
        self._call(self.fs.get_file, self._path(rel), str(local))

    def put(self, local: Path, rel: str) -> None:
        """Upload ``local`` to ``rel``: whole or not at all, where the store allows it.

        Raises OutputError naming the URL.
        """
        final = self._path(rel)
        try:
            if not self.renames:
                self._call(self.fs.put_file, str(local), final)
                return
            # Beside the dataset's top, never in data/ (which holds shards only).
            tmp = self._path(temporary_path(Path(posixpath.basename(rel))).name)
            try:
                self._call(self.fs.put_file, str(local), tmp)
                self._call(self.fs.mv, tmp, final)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.fs.rm_file(tmp)
                raise
        except OSError as e:
            raise OutputError(f"cannot upload {local} to {self.where(rel)}: {e}") from None

    def remove(self, rel: str) -> None:
        """Remove ``rel`` if it is there; raises OutputError naming the URL."""
        try:
            self._call(self.fs.rm_file, self._path(rel))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OutputError(f"cannot remove {self.where(rel)}: {e}") from None

    def makedirs(self, rel: str) -> None:
        try:
            self._call(self.fs.makedirs, self._path(rel), True)
        except OSError as e:
            raise OutputError(f"cannot create {self.where(rel)}: {e}") from None


def ahead(function: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[tuple[T, R]]:
    """``(item, function(item))`` in order, with up to ``depth`` calls running on threads
    ahead of the consumer; an error is raised at its item. Close it (`contextlib.closing`)
    to wait for the calls still running."""
    pending: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(depth, thread_name_prefix="seqdata-fetch") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(function, item)))
                if len(pending) >= depth:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


class RemoteShards:
    """The shards of a dataset at a URL, each fetched into the cache directory ``local``
    (laid out as the dataset) when first needed, a few ahead of the reader.

    Safe for several threads and processes at once: a process fetches a shard once (a
    second thread waits for the first), and processes sharing the cache each download
    to a temporary name of their own and rename the same checked bytes into place.
    """

    def __init__(self, remote: Remote, local: Path, manifest: Manifest,
                 fetch_ahead: int = FETCH_AHEAD, held: int | None = None) -> None:
        self.remote = remote
        self.local = local
        self.manifest = manifest
        self.fetch_ahead = fetch_ahead
        self._hold(held)
        self._have: set[int] = set()  # shards known to be in the cache, checked
        self._order: list[int] = []  # the order the reader said it will read
        self._position: dict[int, int] = {}
        self._reset()

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # a forked loader worker
            self._reset()

    def _reset(self) -> None:
        """Fresh threads and locks: none of them crosses a fork or a pickle."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future[None]] = {}
        self._scheduled = 0  # positions of _order whose fetch has been started

    def __getstate__(self) -> dict[str, Any]:
        keep = ("remote", "local", "manifest", "fetch_ahead", "_have", "_order", "_position")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()
        self._hold(hold(self.local))  # a spawned worker marks the version in use too

    def _hold(self, fd: int | None) -> None:
        """Keep the version's use lock (`seqdata.store.cache.hold`) while this lives."""
        if fd is not None:
            weakref.finalize(self, os.close, fd)

    @property
    def url(self) -> str:
        return self.remote.url

    def where(self, index: int) -> str:
        """The URL of shard ``index``."""
        return self.remote.where(self.manifest.shards[index].path)

    def expect(self, order: Iterable[int]) -> None:
        """Shards will be read in ``order``: fetch the first ones now, and from each
        `fetch` on keep ``fetch_ahead`` of the following ones fetching."""
        self._check_fork()
        with self._lock:
            self._order = [int(i) for i in order]
            self._position = {}
            for position, index in enumerate(self._order):
                self._position.setdefault(index, position)
            self._scheduled = 0
        self._schedule(self.fetch_ahead)

    def fetch(self, index: int) -> None:
        """Make shard ``index`` present in the cache: fetched and checked if it is not.

        Raises ShardError naming the shard's URL (missing, unreadable, damaged).
        """
        self._check_fork()
        position = self._position.get(index)
        if position is not None:
            self._schedule(position + 1 + self.fetch_ahead)
        if index in self._have:
            return
        with self._lock:
            future = self._pending.get(index)
            mine = future is None
            if mine:
                future = self._pending[index] = Future()
        if mine:
            self._run(index, future)
        future.result()

    def _schedule(self, stop: int) -> None:
        """Start fetching the expected shards up to position ``stop``."""
        if stop <= self._scheduled:
            return
        with self._lock:
            for index in self._order[self._scheduled:stop]:
                if index not in self._have and index not in self._pending:
                    future = self._pending[index] = Future()
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(self.fetch_ahead,
                                                        thread_name_prefix="seqdata-fetch")
                    self._pool.submit(self._run, index, future)
            self._scheduled = max(self._scheduled, min(stop, len(self._order)))

    def _run(self, index: int, future: Future[None]) -> None:
        try:
            self._download(index)
            self._have.add(index)
            future.set_result(None)
        except BaseException as e:
            future.set_exception(e)
            if not isinstance(e, Exception):
                raise
        finally:
            with self._lock:  # a failed fetch is tried again by the next read
                self._pending.pop(index, None)

    def _download(self, index: int) -> None:
        info = self.manifest.shards[index]
        final = self.local / info.path
        with contextlib.suppress(OSError):
            if final.stat().st_size == info.size:  # only checked bytes are renamed in
                return
        final.parent.mkdir(parents=True, exist_ok=True)
        url = self.where(index)
        with atomic_output(final, durable=False, tmp_dir=self.local) as tmp:
            try:
                self.remote.get(info.path, tmp)
            except FileNotFoundError:
                raise ShardError(f"shard {url} listed in the manifest is missing") from None
            except OSError as e:
                raise ShardError(f"shard {url} cannot be fetched: {e}") from None
            try:
                check_shard_bytes(tmp, info)
            except ShardError as e:
                raise renamed(e, tmp, url) from None

    def fresh_copies(self) -> Iterator[tuple[int, Path, str | None]]:
        """Each shard downloaded anew (the cache is not trusted) into a scratch
        directory laid out as the dataset, ``fetch_ahead`` of them at a time: yields
        (index, that directory, why it could not be fetched or None; a missing shard
        is simply absent there), and removes each copy once the next is asked for."""
        shards = self.manifest.shards

        def get(index: int) -> str | None:
            dest = scratch / shards[index].path
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.remote.get(shards[index].path, dest)
            except FileNotFoundError:
                dest.unlink(missing_ok=True)
            except OSError as e:
                return f"cannot be fetched: {e}"
            return None

        with tempfile.TemporaryDirectory(prefix=SCRATCH, dir=self.local.parent) as tmp:
            scratch = Path(tmp)
            held = hold(scratch)  # a prune removes scratch directories of killed verifies
            try:
                with contextlib.closing(ahead(get, range(len(shards)),
                                              self.fetch_ahead)) as got:
                    for index, problem in got:
                        yield index, scratch, problem
                        (scratch / shards[index].path).unlink(missing_ok=True)
            finally:
                if held is not None:
                    os.close(held)


def open_remote(url: str, cache: Path | str | None = None, fetch_ahead: int = FETCH_AHEAD,
                find_shards: bool = True) -> RemoteShards:
    """The dataset at ``url``: its manifest (and card) fetched into the cache and
    validated there, and with ``find_shards`` every shard it lists seen at the URL (one
    listing), none fetched.

    Raises RemoteError for a URL fsspec cannot open, ManifestError for a missing or bad
    manifest and ShardError for a missing shard, each naming the URL.
    """
    remote = Remote(url)
    where = remote.where(MANIFEST_NAME)
    try:
        text = remote.read(MANIFEST_NAME, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ManifestError(f"{where} not found: {remote.url} is not a finished seqdata "
                            f"dataset (the manifest is written last)") from None
    except OSError as e:
        raise ManifestError(f"cannot read {where}: {e}") from None
    local = url_dir(remote.url, cache) / hashlib.sha256(text).hexdigest()[:16]
    held = None
    try:
        try:
            held = hold(local)  # made if need be, and in use: no prune removes it now
            remember_url(remote.url, local.parent)
            if not (local / MANIFEST_NAME).exists():
                write_bytes_atomic(local / MANIFEST_NAME, text, durable=False)
        except OSError as e:
            raise OutputError(f"cannot write the cache {local}: {e.strerror or e}") from None
        return _open_version(remote, local, fetch_ahead, find_shards, held)
    except BaseException:
        if held is not None:
            os.close(held)
        raise


def _open_version(remote: Remote, local: Path, fetch_ahead: int, find_shards: bool,
                  held: int | None) -> RemoteShards:
    try:
        manifest = read_manifest(local)
    except ManifestError as e:
        raise renamed(e, local, remote.url) from None
    _fetch_card(remote, local)
    if find_shards:
        _find_shards(remote, manifest)
    return RemoteShards(remote, local, manifest, fetch_ahead, held)


def _find_shards(remote: Remote, manifest: Manifest) -> None:
    """Raise ShardError, naming its URL, for a shard the manifest lists and the URL lacks."""
    listed: dict[str, set[str]] = {}
    for info in manifest.shards:
        parent, name = posixpath.split(info.path)
        if parent not in listed:
            try:
                listed[parent] = remote.names(parent)
            except OSError as e:
                raise ShardError(f"cannot list {remote.where(parent)}: {e}") from None
        if name not in listed[parent]:
            raise ShardError(f"shard {remote.where(info.path)} listed in the manifest is "
                             f"missing")


def _fetch_card(remote: Remote, local: Path) -> None:
    """Copy the URL's card into ``local`` (documentation: one that cannot be read is
    left out, as verify notes)."""
    try:
        card = remote.read(CARD_NAME, MAX_CARD_BYTES)
        write_bytes_atomic(local / CARD_NAME, card, durable=False)
    except (OSError, OutputError):
        (local / CARD_NAME).unlink(missing_ok=True)


def publish(remote: Remote, staging: Path, manifest: Manifest) -> None:
    """Upload the finished dataset in ``staging``: the URL's manifest is removed first
    (from then on it reads as an unfinished dataset), then every shard is uploaded,
    shards the manifest does not list are removed, then the card, and the manifest last.
    Raises OutputError naming the URL; run again (``resume``), it uploads it all again."""
    remote.remove(MANIFEST_NAME)
    remote.makedirs(DATA_DIR)
    keep = {info.path for info in manifest.shards}
    with contextlib.closing(ahead(lambda info: remote.put(staging / info.path, info.path),
                                  manifest.shards, UPLOADS)) as uploads:
        for _ in uploads:
            pass
    try:
        stale = [f for f in remote.files() if f not in keep
                 and (f.startswith(f"{DATA_DIR}/") or TMP_NAME.search(f))]
    except OSError as e:
        raise OutputError(f"cannot list {remote.url}: {e}") from None
    for rel in stale:
        remote.remove(rel)
    remote.put(staging / CARD_NAME, CARD_NAME)
    remote.put(staging / MANIFEST_NAME, MANIFEST_NAME)

