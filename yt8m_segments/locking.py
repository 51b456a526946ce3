"""One writer per output directory: a lock file that names its holder.

Two jobs pointed at the same --train_dir, --cache_dir (or --output_cache) or
--export_dir would interleave checkpoints, cache files or version numbers.
The first holds `<dir>/.yt8m.lock`: an exclusive `flock`, which the kernel
drops when the process dies (SIGKILL included), on a file that says which
host, pid and command hold it. The second refuses at once, naming the
holder. A lock file left by a killed job is free to take; the job that
takes it says whose it was. The file is removed when the job lets go.
Object-store paths (gs://, s3://) have no such lock and are not locked.

Re-entrant within a process: inference holds its cache directory while it
predicts the parts, and the cache writer it then opens there locks it again.
"""

import contextlib
import fcntl
import os
import socket
import sys
import time

from absl import logging

from yt8m_segments import atomic

LOCK_FILE = ".yt8m.lock"
_HELD = {}  # real path of a held directory -> how many holds are open


class DirectoryInUseError(RuntimeError):
    """Another running job holds the directory."""


def _holder(text):
    return " ".join(text.split()) or "a job that has not said who it is yet"


def _read(fd):
    return os.pread(fd, 4096, 0).decode(errors="replace")


def _lock(path):
    """An fd of the file at `path`, exclusively flocked."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise DirectoryInUseError(
                f"{os.path.dirname(path)} is in use by {_holder(holder)} "
                f"(lock file {path}): wait for that job to end, or give this "
                "one another directory") from None
        # The previous holder removes the file as it lets go: a lock taken on
        # the removed file guards nothing, so take the one now at `path`.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def hold(directory, writes):
    """Hold `directory` (made if missing) for the block, or raise
    DirectoryInUseError. `writes` says what the job writes there ("training
    run", "probability cache", "exports"), for whoever finds it held."""
    if "://" in directory:
        yield
        return
    with atomic.names_failed_writes(directory):
        os.makedirs(directory, exist_ok=True)
    key = os.path.realpath(directory)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = os.path.join(key, LOCK_FILE)
    with atomic.names_failed_writes(directory):
        fd = _lock(path)
    left = _read(fd)
    if left.strip():
        logging.warning("%s: taking over the lock of %s, which is no longer "
                        "running", directory, _holder(left))
    command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    os.ftruncate(fd, 0)
    os.pwrite(fd, (f"host={socket.gethostname()} pid={os.getpid()} "
                   f"command={command} writing={writes.replace(' ', '_')} "
                   f"since={time.strftime('%Y-%m-%dT%H:%M:%S')}\n").encode(), 0)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # still holding it: a waiter re-checks the file
        os.close(fd)
