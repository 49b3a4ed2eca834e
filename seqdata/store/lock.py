"""The build lock: one build at a time in a directory, held until its last process ends.

``DIR/.seqdata-build.lock`` is locked with ``flock``. A build takes it exclusively, so a
second one (plain, resume or overwrite) is refused, writes its pid into it, and then
shares it (``LOCK_SH``) with its pool workers, which each lock it too: the directory
stays locked for as long as the build's process or any of its workers lives, killed or
not, as the kernel drops a process's locks when it ends. A finished build removes the
file; one that was killed leaves it behind, unlocked, for the next build to take over.
Without ``flock`` (Windows, or a file system without locks) there is no lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from seqdata.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".seqdata-build.lock"
# flock's errors on a file system without locks (some network and FUSE ones)
LOCKS_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)


def _refuse(out: Path, fd: int) -> OutputError:
    """The error for a lock held by another build; the lock file names its process."""
    first = ""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        first = os.pread(fd, 64, 0).decode().split("\n", 1)[0].strip()
    if not first.isdigit():
        return OutputError(f"{out} is being built by another process; wait for it to end "
                           f"or stop it")
    if not _alive(int(first)):  # killed: its workers still hold the lock, for a moment
        return OutputError(f"{out} is still locked by the workers of build process {first}, "
                           f"which has ended; wait for them to end")
    return OutputError(f"{out} is being built by process {first}; wait for it to end or "
                       f"stop it")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # there, but not ours to signal
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)


def acquire(out: Path) -> int | None:
    """Lock directory ``out`` for a build: its pid written, the lock shared; the fd, or
    None where there is no ``flock`` (Windows, a file system without locks).

    Raises OutputError naming the holder if another build of ``out`` is running.
    """
    if fcntl is None:
        return None
    path = out / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o644)
        except OSError as e:
            raise OutputError(f"cannot lock {path}: {e.strerror or e}") from None
        try:
            locked = _lock(out, fd)
            # A finished build removes the file once it has unlocked it: if that happened
            # between our open and our lock, we hold a file no one else sees; start again.
            if locked and _same_file(fd, path):
                return fd
        except BaseException as e:
            os.close(fd)
            if isinstance(e, OSError):
                raise OutputError(f"cannot lock {path}: {e.strerror or e}") from None
            raise
        os.close(fd)
        if not locked:
            with contextlib.suppress(OSError):
                path.unlink()
            return None


def _lock(out: Path, fd: int) -> bool:
    """Lock ``fd`` exclusively, write our pid, share it; False if locks are unsupported."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refuse(out, fd) from None
    except OSError as e:
        if e.errno in LOCKS_UNSUPPORTED:
            return False
        raise
    line = f"{os.getpid()}\n".encode()
    os.pwrite(fd, line, 0)
    os.ftruncate(fd, len(line))
    # Going from exclusive to shared is not atomic in flock: another build may slip in
    # between. Its pid is then in the file by the time we have the lock back.
    fcntl.flock(fd, fcntl.LOCK_SH)
    if os.pread(fd, 64, 0) != line:
        raise _refuse(out, fd)
    return True


def release(out: Path, fd: int | None) -> None:
    """Unlock ``out``; remove the lock file if no worker holds it any more."""
    if fd is None:
        return
    path = out / LOCK_NAME
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _same_file(fd, path):
            path.unlink()
    except OSError:
        pass  # a worker still holds it, or it cannot be removed: left behind, unlocked
    finally:
        os.close(fd)


@contextlib.contextmanager
def build_lock(out: Path) -> Iterator[Path | None]:
    """Hold the build lock of ``out`` for the block; yields the lock file's path (None
    where there is no lock)."""
    fd = acquire(out)
    try:
        yield None if fd is None else out / LOCK_NAME
    finally:
        release(out, fd)


def share(path: Path) -> int:
    """Take a shared lock on a build's lock file (in a pool worker); its fd, kept open
    for the life of the process."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise OutputError(f"cannot lock {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise OutputError(f"cannot lock {path}: {e.strerror or e}") from None
    return fd
