"""Atomic file output: write to a temporary sibling, then rename over the target.

A killed job leaves either the old file or the new one, never half of one.
Every file the package writes goes through here, under one temporary name
(`temporary_name`), so a leftover is recognisable and never read as output;
the next write of the same file removes what a killed writer left
(`remove_stale_temporaries`).
Two directory writers keep their own names on purpose: data/array_cache.py's
resumable builds a fixed `<dir>.tmp` (a rerun resumes in it, whatever its
pid) and export.py a hidden `.tmp-<version>-<id>` (TF Serving scans the
export directory).
TensorFlow is imported by the writers, not here: locking.py uses
names_failed_writes in jobs' lock holders, which need no TensorFlow.
"""

import contextlib
import errno
import os
import re
import sys

TMP_MARK = ".tmp-"
# Extensions writers infer a format from (Keras, matplotlib): kept last.
KEPT_SUFFIXES = (".weights.h5", ".keras", ".png", ".npz", ".h5")


def temporary_name(path, pid=None):
    """`<dir>/<stem>.tmp-<pid><ext>` beside `path`: the same filesystem (so
    the rename is atomic), one per process (`pid`, default this one's), and
    the extension a writer may need (`model.keras` -> `model.tmp-123.keras`;
    `a.csv` -> `a.csv.tmp-123`)."""
    pid = os.getpid() if pid is None else pid
    for suffix in KEPT_SUFFIXES:
        if path.endswith(suffix):
            return f"{path[:-len(suffix)]}{TMP_MARK}{pid}{suffix}"
    return f"{path}{TMP_MARK}{pid}"


def _running(pid):
    """Whether process `pid` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def remove_stale_temporaries(path):
    """Remove the temporaries of `path` (`temporary_name`) whose process no
    longer runs: a SIGKILL leaves its write's temporary behind, under a pid
    no rerun has, so without this every kill of a job would strand one
    beside each file it was writing (found by bench/kill_points.py). Local
    paths only; a writer is seen as running when its pid runs on this
    machine, so a temporary of a live process is never taken."""
    if "://" in path:
        return
    directory = os.path.dirname(path) or "."
    head, tail = os.path.basename(temporary_name(path, "\0")).split("\0")
    pattern = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + "$")
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        found = pattern.match(name)
        if found and int(found.group(1)) != os.getpid() and not _running(
                int(found.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, name))


def is_temporary(name):
    """Whether a file name is one `temporary_name` gives."""
    return TMP_MARK in os.path.basename(name)


# Why a write fails for reasons of the place, not the data: a full disk, a
# quota, no permission, a read-only file system.
_PLACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def names_failed_writes(path):
    """A write in the block that fails for want of space or permission
    raises OSError("cannot write <path>: <reason>"): the output the user
    named (not a temporary name), in one line."""
    try:
        yield
    except OSError as error:
        if error.errno not in _PLACE_ERRNOS:
            raise
        raise OSError(f"cannot write {path}: {error.strerror}") from error
    except Exception as error:  # TensorFlow's, where it is loaded
        tf_errors = getattr(sys.modules.get("tensorflow"), "errors", None)
        if tf_errors is None or not isinstance(error, (
                tf_errors.ResourceExhaustedError, tf_errors.PermissionDeniedError)):
            raise
        # TF's message holds the reason among file names and op names.
        reasons = [os.strerror(code) for code in _PLACE_ERRNOS
                   if os.strerror(code) in error.message]
        if not reasons:
            raise
        raise OSError(f"cannot write {path}: {reasons[0]}") from error


@contextlib.contextmanager
def atomic_path(path):
    """Yields the temporary name to write `path` through (for writers that
    take a path: TFRecordWriter, model.save, savefig); renamed over `path`
    when the block succeeds, removed when it fails (a full disk or no
    permission: names_failed_writes); a killed writer's are removed first.
    Any filesystem TF knows."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    remove_stale_temporaries(path)
    tmp_path = temporary_name(path)
    try:
        with names_failed_writes(path):
            yield tmp_path
            tf.io.gfile.rename(tmp_path, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp_path):
            tf.io.gfile.remove(tmp_path)


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """Open `path` for writing through `atomic_path`."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with atomic_path(path) as tmp_path:
        with tf.io.gfile.GFile(tmp_path, mode) as handle:
            yield handle
