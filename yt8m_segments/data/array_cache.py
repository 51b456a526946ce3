"""Local directories of raw arrays that stand in for re-reading records.

What the segment and video caches share. A cache is built in a temporary
sibling directory and renamed into place whole, so a killed build leaves no
directory that `is_current` accepts. Its `manifest.json` holds the build's
key (everything its contents depend on, the input files' fingerprints
among them) and the arrays' sizes: a cache whose key differs from the one a
job would build is stale. Arrays are raw little-endian files `<name>.bin`,
read back through memory maps; strings are `<name>.txt`, one per line. A
long build can be resumable: made of parts (`build_part`, one per input
file), it keeps its temporary directory when killed, and a rerun with the
same key skips the finished parts.
"""

import contextlib
import json
import os
import shutil

import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_segments.atomic import atomic_open

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
    return _read_json(path)


def is_current(cache_dir, key):
    """Whether `cache_dir` holds a complete cache built with `key`."""
    manifest = read_manifest(cache_dir)
    return manifest is not None and {
        name: manifest.get(name) for name in key} == key


def ensure(cache_dir, current, build_cache, what):
    """The manifest of `cache_dir` if `current`, else `build_cache()`'s."""
    if current:
        logging.info("%s %s is current", what, cache_dir)
        return read_manifest(cache_dir)
    logging.info("building %s %s", what, cache_dir)
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


KEY_FILE = "key.json"
PARTS = "parts"
PART_SIZES = "sizes.json"


def build(cache_dir, key, write, resumable=False):
    """Runs `write(directory)` into a temporary directory, then moves it to
    `cache_dir` (replacing an older cache) with a manifest of `key` and what
    `write` returned (a dict of sizes). Returns the manifest.

    `resumable`: the temporary directory outlives a failed or killed build
    and a rerun with the same key goes on in it (`write` skips the parts it
    finished: `build_part`); one with another key starts afresh.
    """
    cache_dir = cache_dir.rstrip("/")
    tmp_dir = cache_dir + ".tmp"
    key_path = os.path.join(tmp_dir, KEY_FILE)
    if not (resumable and _read_key(key_path) == key):
        shutil.rmtree(tmp_dir, ignore_errors=True)  # another build's leftovers
        os.makedirs(tmp_dir)
        _write_json(key_path, key)
    try:
        manifest = {**key, **write(tmp_dir)}
        _write_json(os.path.join(tmp_dir, MANIFEST), manifest)
        old = cache_dir + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(cache_dir):
            os.rename(cache_dir, old)
        os.rename(tmp_dir, cache_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if not resumable:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return manifest


def build_part(directory, index, write_part):
    """Part `index` of a resumable build: its sizes if a killed build
    finished it, else `write_part(part directory)`'s (a dict), written in a
    temporary sibling and renamed into place whole."""
    part_dir = part_directory(directory, index)
    sizes_path = os.path.join(part_dir, PART_SIZES)
    if os.path.exists(sizes_path):
        return _read_json(sizes_path)
    tmp_dir = part_dir + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    sizes = write_part(tmp_dir)
    _write_json(os.path.join(tmp_dir, PART_SIZES), sizes)
    os.rename(tmp_dir, part_dir)
    return sizes


def part_directory(cache_dir, index):
    return os.path.join(cache_dir, PARTS, f"{index:05d}")


def _read_json(path):
    with open(path) as handle:
        return json.load(handle)


def _read_key(path):
    """A resumable build's key, None if absent or torn (a build killed in
    its first write: found by bench/kill_points.py's review)."""
    try:
        return _read_json(path)
    except (FileNotFoundError, ValueError):
        return None


def _write_json(path, value):
    """Written whole or not at all (temp + rename)."""
    with atomic_open(path) as handle:
        json.dump(value, handle, indent=1)


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
        lines = np.array(handle.read().split(b"\n")[:-1], dtype=np.bytes_)
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
