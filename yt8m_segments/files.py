"""Opening the package's input files (CSVs, vocabularies, run configs,
caches' id lists) on any filesystem TensorFlow knows, with the package's
error for a missing one: a FileNotFoundError naming what was looked for,
not TensorFlow's NotFoundError."""

import tensorflow as tf


def open_input(path, mode="r", what="file"):
    """tf.io.gfile.GFile(path, mode), after checking that `path` (a `what`)
    exists."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no {what} at {path}")
    return tf.io.gfile.GFile(path, mode)
