"""Local directories of raw arrays that stand in for re-reading records.

What the segment and video caches share. A cache is built in a temporary
sibling directory and renamed into place whole, so a killed build leaves no
directory that `is_current` accepts. Its `manifest.json` holds the build's
key (everything its contents depend on, the input files' fingerprints
among them) and the arrays' sizes: a cache whose key differs from the one a
job would build is stale. Arrays are raw little-endian files `<name>.bin`,
read back through memory maps; strings are `<name>.txt`, one per line.
"""

import contextlib
import json
import os
import shutil

import numpy as np
import tensorflow as tf
from absl import logging

MANIFEST = "manifest.json"


def file_fingerprint(path):
    """[path, size, mtime_ns]; os.stat locally: gfile.stat keeps 1 s mtimes."""
    if "://" in path:
        stat = tf.io.gfile.stat(path)
        return [path, stat.length, stat.mtime_nsec]
    stat = os.stat(path)
    return [path, stat.st_size, stat.st_mtime_ns]


def make_key(files, **params):
    """A build's key: `params` and the files' fingerprints, as JSON reads back."""
    key = {**params, "input_files": [file_fingerprint(path) for path in files]}
    return json.loads(json.dumps(key))


def read_manifest(cache_dir):
    """The cache's manifest, or None where there is no complete cache."""
    path = os.path.join(cache_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def is_current(cache_dir, key):
    """Whether `cache_dir` holds a complete cache built with `key`."""
    manifest = read_manifest(cache_dir)
    return manifest is not None and {
        name: manifest.get(name) for name in key} == key


def ensure(cache_dir, key, build_cache, what):
    """The manifest of `cache_dir` if built with `key`, else `build_cache()`'s."""
    if is_current(cache_dir, key):
        logging.info("%s %s is current", what, cache_dir)
        return read_manifest(cache_dir)
    logging.info("building %s %s from %d file(s)", what, cache_dir,
                 len(key["input_files"]))
    return build_cache()


class Writer:
    """Streams arrays to `<name>.bin` (as `dtypes[name]`) and lines to `<name>.txt`."""

    def __init__(self, directory, dtypes, line_files=()):
        self._directory = directory
        self._dtypes = dtypes
        self._names = list(dtypes) + [name + ".txt" for name in line_files]
        self._stack = contextlib.ExitStack()
        self._handles = {}

    def __enter__(self):
        for name in self._names:
            file_name = name if name.endswith(".txt") else name + ".bin"
            self._handles[name] = self._stack.enter_context(
                open(os.path.join(self._directory, file_name), "wb"))
        return self

    def __exit__(self, *exc_info):
        return self._stack.__exit__(*exc_info)

    def append(self, name, values):
        self._handles[name].write(
            np.ascontiguousarray(values, self._dtypes[name]).tobytes())

    def append_lines(self, name, lines):
        self._handles[name + ".txt"].write(b"".join(s + b"\n" for s in lines))


def build(cache_dir, key, write):
    """Runs `write(directory)` into a temporary directory, then moves it to
    `cache_dir` (replacing an older cache) with a manifest of `key` and what
    `write` returned (a dict of sizes). Returns the manifest.
    """
    cache_dir = cache_dir.rstrip("/")
    tmp_dir = cache_dir + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)  # a killed build's leftovers
    os.makedirs(tmp_dir)
    try:
        manifest = {**key, **write(tmp_dir)}
        with open(os.path.join(tmp_dir, MANIFEST), "w") as handle:
            json.dump(manifest, handle, indent=1)
        old = cache_dir + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(cache_dir):
            os.rename(cache_dir, old)
        os.rename(tmp_dir, cache_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return manifest


def open_manifest(cache_dir, what):
    """The manifest of `cache_dir`; an error saying how to build one if none."""
    manifest = read_manifest(cache_dir)
    if manifest is None:
        raise FileNotFoundError(f"no {what} in {cache_dir} (build it with "
                                "its module's `ensure`)")
    return manifest


def open_array(cache_dir, name, dtype, shape):
    """A read-only memory map of `<name>.bin` (an empty array has no file
    content to map)."""
    if 0 in shape:
        return np.zeros(shape, dtype)
    return np.memmap(os.path.join(cache_dir, name + ".bin"), dtype, mode="r",
                     shape=shape)


def read_lines(cache_dir, name, count):
    """`<name>.txt` as a numpy bytes array; an error unless `count` lines."""
    path = os.path.join(cache_dir, name + ".txt")
    with open(path, "rb") as handle:
        lines = np.array(handle.read().split(b"\n")[:-1])
    if len(lines) != count:
        raise ValueError(f"{path}: {len(lines)} lines for {count} rows")
    return lines


def row_batches(num_rows, batch_size, to_batch, shuffle=False, seed=None,
                repeat=False):
    """`to_batch(row indices [b])` over batches of all rows, in parallel.

    Shuffling is over all rows (indices only: 8 bytes each), reshuffled
    every epoch.
    """
    indices = tf.data.Dataset.range(num_rows)
    if shuffle:
        indices = indices.shuffle(num_rows, seed=seed,
                                  reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    return indices.batch(batch_size).map(
        to_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE)
