"""Opening the package's input files (CSVs, vocabularies, run configs,
caches' id lists, models, records) on any filesystem TensorFlow knows, with
the package's errors: a FileNotFoundError naming what was looked for, not
TensorFlow's NotFoundError, and `cannot read <path>: <reason>` for a file
the job may not read."""

import re

import tensorflow as tf

# How TensorFlow's file systems word a file they cannot open.
_UNREADABLE = re.compile(r"(?:^|\s)(\S+); (Permission denied|No such file or "
                         r"directory)")


def unreadable(message):
    """`cannot read <path>: <reason>` from TensorFlow's error message for a
    file it could not open, or None for any other message."""
    found = _UNREADABLE.search(message)
    return found and f"cannot read {found.group(1)}: {found.group(2)}"


def read_head(path, size):
    """The first `size` bytes of `path`; a file the job may not read is an
    OSError naming it (Keras, for one, reports such a file as missing)."""
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read(size)
    except (tf.errors.PermissionDeniedError, tf.errors.NotFoundError) as error:
        raise OSError(unreadable(error.message) or f"cannot read {path}: "
                      f"{error.message}") from error


def check_readable(path):
    """An OSError naming `path` if the job may not read it."""
    read_head(path, 1)


def open_input(path, mode="r", what="file"):
    """tf.io.gfile.GFile(path, mode), after checking that `path` (a `what`)
    exists."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no {what} at {path}")
    check_readable(path)
    return tf.io.gfile.GFile(path, mode)
