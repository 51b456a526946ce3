"""Atomic file output: write to a temporary sibling, then rename over the target.

A killed job leaves either the old file or the new one, never half of one.
"""

import contextlib

import tensorflow as tf


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """Open `path` for writing via `path.tmp`; renamed into place on success.

    Uses tf.io.gfile so the target may be on any filesystem TF knows (GCS too).
    """
    tmp_path = path + ".tmp"
    try:
        with tf.io.gfile.GFile(tmp_path, mode) as handle:
            yield handle
        tf.io.gfile.rename(tmp_path, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp_path):
            tf.io.gfile.remove(tmp_path)
