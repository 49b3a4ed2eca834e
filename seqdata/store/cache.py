"""The local cache of datasets read from URLs: what it holds, and pruning it.

    <cache>/<sha256(url)[:16]>/source-url                 the URL, as opened first
    <cache>/<sha256(url)[:16]>/<sha256(manifest)[:16]>/   a version: manifest, card, data/,
                                                          and its use lock ``.in-use``
    <cache>/<sha256(url)[:16]>/build/                     a build's staging (never pruned)
    <cache>/<sha256(url)[:16]>/verify-*/                  a running verify's downloads

A reader (`seqdata.store.remote.open_remote`) holds a shared ``flock`` on its version's
``.in-use`` for as long as it lives, and its forked loader workers inherit the lock; the
kernel drops it when the last of them ends, killed or not. Opening touches the file: its
modification time is the version's last use. `prune` takes the lock exclusively without
waiting, so a version in use is skipped, never removed under a reader, and removes least
recently used versions first; each is renamed away before it is deleted, so a version
half deleted (by a prune killed mid-way) is never read. Where ``flock`` is missing
(Windows) nothing is in use; on a file system without locks every version is taken to
be in use, so prune removes none there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from seqdata.errors import OutputError
from seqdata.store.atomic import TMP_NAME, write_bytes_atomic
from seqdata.store.lock import LOCKS_UNSUPPORTED, fcntl
from seqdata.store.manifest import DATA_DIR, MANIFEST_NAME

SOURCE_NAME = "source-url"  # in a URL's directory: the URL it caches
IN_USE_NAME = ".in-use"  # in a version's directory: its use lock, touched at each use
REMOVING = ".removing-"  # a version renamed away by `prune`, to be deleted
SCRATCH = "verify-"  # a verify's fresh downloads, held (as a version is) while it runs
STAGING = "build"
_HASH = re.compile(r"[0-9a-f]{16}")


def cache_root(cache: Path | str | None = None) -> Path:
    """The cache directory: ``cache``, else ``$SEQDATA_CACHE``, else
    ``$XDG_CACHE_HOME/seqdata`` (``~/.cache/seqdata``)."""
    if cache is None:
        cache = os.environ.get("SEQDATA_CACHE") or (
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seqdata")
    return Path(cache).expanduser()


def url_dir(url: str, cache: Path | str | None = None) -> Path:
    """The directory of ``url``'s versions and staging, named by the URL's hash."""
    url = url.rstrip("/")
    return cache_root(cache) / hashlib.sha256(url.encode()).hexdigest()[:16]


def remember_url(url: str, directory: Path) -> None:
    """Write which URL ``directory`` (its `url_dir`) caches, once."""
    source = directory / SOURCE_NAME
    if not source.exists():
        write_bytes_atomic(source, url.rstrip("/").encode(), durable=False)


def hold(version: Path) -> int | None:
    """Make ``version`` if need be, and mark it in use for as long as the returned
    descriptor stays open (forks inherit it), and as used now. None without ``flock``."""
    if fcntl is None:  # pragma: no cover - not POSIX
        version.mkdir(parents=True, exist_ok=True)
        return None
    path = version / IN_USE_NAME
    while True:  # again if a prune renames the version away meanwhile: it is made anew
        try:
            version.mkdir(parents=True, exist_ok=True)
            fd = _open_use_file(path, create=True)
        except FileNotFoundError:
            continue
        except PermissionError:
            return None  # another user's, and none yet: read unmarked, as before marks
        except OSError as e:
            raise OutputError(f"cannot mark the cache {version} in use: "
                              f"{e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a prune renames it away
        except OSError as e:
            if e.errno not in LOCKS_UNSUPPORTED:
                os.close(fd)
                raise OutputError(f"cannot mark the cache {version} in use: "
                                  f"{e.strerror or e}") from None
        if _same_file(fd, path):
            with contextlib.suppress(OSError):  # not ours to touch: the use is not dated
                os.utime(fd)
            return fd
        os.close(fd)


def _open_use_file(path: Path, create: bool = False) -> int:
    """A version's use file, open for writing where this user may (NFS locks need it),
    else read-only (another user's cache: its locks work all the same)."""
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(path, os.O_RDWR | flags | (os.O_CREAT if create else 0), 0o644)
    except PermissionError as e:
        try:
            return os.open(path, os.O_RDONLY | flags)
        except FileNotFoundError:
            raise e from None  # not there, and not ours to make


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@dataclass(frozen=True)
class CachedVersion:
    """One version of a dataset in the cache."""

    url: str  # "?" if the cache does not say (made by a seqdata from before it did)
    path: Path
    size: int  # bytes of its files
    shards: int  # shard files present (each was checked when it was fetched)
    last_used: float  # seconds since the epoch
    in_use: bool  # a reader holds it now


@dataclass(frozen=True)
class CacheContents:
    versions: list[CachedVersion]  # least recently used first
    staging: list[tuple[str, int]]  # (URL, bytes) of each build's staging directory

    @property
    def size(self) -> int:
        return sum(v.size for v in self.versions) + sum(size for _, size in self.staging)


def read_cache(cache: Path | str | None = None) -> CacheContents:
    """What the cache holds; other files in it are left out. Raises OutputError if it is
    not a directory."""
    root = cache_root(cache)
    if not root.is_dir():
        raise OutputError(f"{root} is not a directory: no seqdata cache there")
    versions, staging = [], []
    for directory in sorted(_children(root)):
        url = _source_url(directory)
        if (directory / STAGING).is_dir():
            staging.append((url, _size(directory / STAGING)))
        for version in sorted(_children(directory)):
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
                versions.append(_version(url, version))
    versions.sort(key=lambda v: v.last_used)
    return CacheContents(versions, staging)


def _children(directory: Path) -> Iterator[Path]:
    """Subdirectories of ``directory`` named as the cache names them (16 hex digits)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if _HASH.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                yield Path(entry.path)


def _source_url(directory: Path) -> str:
    try:
        with open(directory / SOURCE_NAME, "rb") as f:
            return f.read(4096).decode("utf-8", "replace").strip() or "?"
    except OSError:
        return "?"


def _version(url: str, version: Path) -> CachedVersion:
    """A version with its manifest; FileNotFoundError if it has none (not a version, or
    being made or removed)."""
    manifest = (version / MANIFEST_NAME).stat()
    try:
        last_used = (version / IN_USE_NAME).stat().st_mtime
    except FileNotFoundError:  # cached by a seqdata from before use marks
        last_used = manifest.st_mtime
    try:
        shards = sum(1 for e in os.scandir(version / DATA_DIR)
                     if e.is_file(follow_symlinks=False) and not TMP_NAME.search(e.name))
    except OSError:
        shards = 0
    return CachedVersion(url, version, _size(version), shards, last_used, _in_use(version))


def _size(directory: Path) -> int:
    total = 0
    for top, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_size
    return total


@contextlib.contextmanager
def _exclusive(version: Path) -> Iterator[bool]:
    """Whether no reader holds ``version`` (then none can until the block ends)."""
    if fcntl is None:  # pragma: no cover - not POSIX
        yield True
        return
    try:
        fd = _open_use_file(version / IN_USE_NAME)
    except FileNotFoundError:  # never held by a reader that marks its use
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:  # held; or no locks on this file system: then unknown
            if not isinstance(e, BlockingIOError) and e.errno not in LOCKS_UNSUPPORTED:
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _in_use(version: Path) -> bool:
    with _exclusive(version) as free:
        return not free


def prune(max_size: int, cache: Path | str | None = None,
          dry_run: bool = False) -> tuple[list[CachedVersion], CacheContents]:
    """Remove the least recently used versions not in use until the versions take at
    most ``max_size`` bytes (staging directories are never removed: a build resumes from
    them), and leftovers of killed downloads and prunes. Returns what was removed (with
    ``dry_run``: what would be) and what the cache held before."""
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0 bytes, got {max_size}")
    contents = read_cache(cache)
    if not dry_run:
        _remove_leftovers(cache_root(cache))
    total = sum(v.size for v in contents.versions)
    removed = []
    for version in contents.versions:
        if total <= max_size:
            break
        if version.in_use or (not dry_run and not _remove(version.path)):
            continue
        removed.append(version)
        total -= version.size
    return removed, contents


def _remove(version: Path) -> bool:
    """Remove ``version`` unless a reader holds it; whether it was removed."""
    away = version.parent / f"{REMOVING}{version.name}-{os.getpid()}-{time.monotonic_ns()}"
    with _exclusive(version) as free:
        if not free:
            return False
        try:
            version.rename(away)
        except OSError as e:
            raise OutputError(f"cannot remove {version} from the cache: "
                              f"{e.strerror or e}") from None
    shutil.rmtree(away, ignore_errors=True)
    return True


def _remove_leftovers(root: Path) -> None:
    """Versions a killed prune renamed away, scratch directories of killed verifies
    (a running verify holds its own), and killed downloads' temporary files in versions
    no reader holds."""
    for directory in _children(root):
        with contextlib.suppress(OSError):
            for entry in os.scandir(directory):
                if entry.name.startswith(REMOVING):
                    shutil.rmtree(entry.path, ignore_errors=True)
                elif entry.name.startswith(SCRATCH) and entry.is_dir(follow_symlinks=False):
                    with _exclusive(Path(entry.path)) as free:
                        if free:
                            shutil.rmtree(entry.path, ignore_errors=True)
        for version in _children(directory):
            with _exclusive(version) as free:
                if not free:
                    continue
                for top, _, files in os.walk(version):
                    for name in files:
                        if TMP_NAME.search(name):
                            with contextlib.suppress(OSError):
                                os.unlink(os.path.join(top, name))
