"""An on-disk cache of the rated segments: fine-tuning without parsing records.

Fine-tuning reads the same rated segments every epoch, but the records view
(`views.rated_segment_dataset`) must parse each segment's whole video record
to get at its window, so it is bounded by records/s (~10K segments/s on 2
cores). `build` runs that view once (`quantized=True`) and keeps only what
the rated windows use: W = 5 + 2n uint8 frames per segment (n =
`context_frames`), ~1.4 GB at real scale (~237K segments, 5-frame windows),
plus ~1.2 GB of dense labels, weights and rated flags at 1000 classes.
`dataset` then reads it back through memory maps, one numpy gather per batch.

A cache is a local directory of raw little-endian arrays, row i = segment i
in the records view's (unshuffled) order:

  frames.bin      uint8   [N, W, D]  quantized; padding repeats a real frame
  mask.bin        bool    [N, W]     the frames that are really in the video
  labels.bin      float16 [N, C]     over the segment classes
  weights.bin     float16 [N, C]     (float16: relative rounding <= 2^-11)
  rated.bin       bool    [N, C]
  segment_id.txt  N lines `<video id>:<start frame>`
  manifest.json   N, W, D, C, dtypes, the build parameters and the input
                  files' fingerprint (path, size, mtime_ns)

It is written in a temporary sibling directory and renamed into place whole,
so a killed build leaves no directory that `is_current` accepts.
"""

import contextlib
import json
import os
import shutil

import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SEGMENT_IDS = "segment_id.txt"
# Stored dtype of each array (file `<key>.bin`), and the dtype it is read as.
STORED = {"frames": np.dtype("u1"), "mask": np.dtype("?"),
          "labels": np.dtype("<f2"), "weights": np.dtype("<f2"),
          "rated": np.dtype("?")}
READ_AS = {"frames": tf.uint8, "mask": tf.bool, "labels": tf.float32,
           "weights": tf.float32, "rated": tf.bool}


def _file_fingerprint(path):
    """[path, size, mtime_ns]; os.stat locally: gfile.stat keeps 1 s mtimes."""
    if "://" in path:
        stat = tf.io.gfile.stat(path)
        return [path, stat.length, stat.mtime_nsec]
    stat = os.stat(path)
    return [path, stat.st_size, stat.st_mtime_ns]


def _key(files, feature_spec, segment_class_ids, context_frames=0,
         negative_weight=1.0, vocabulary_size=records.NUM_CLASSES,
         compression="auto", skip_corrupt_records=False):
    """What a cache's contents depend on, as its manifest stores it."""
    key = {"format_version": FORMAT_VERSION,
           "feature_names": list(feature_spec.names),
           "feature_sizes": list(feature_spec.sizes),
           "segment_class_ids": [int(c) for c in segment_class_ids],
           "context_frames": int(context_frames),
           "negative_weight": float(negative_weight),
           "vocabulary_size": int(vocabulary_size),
           "compression": compression,
           "skip_corrupt_records": bool(skip_corrupt_records),
           "input_files": [_file_fingerprint(path) for path in files]}
    return json.loads(json.dumps(key))  # as a read-back manifest has it


def read_manifest(cache_dir):
    """The cache's manifest, or None where there is no complete cache."""
    path = os.path.join(cache_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def is_current(cache_dir, files, feature_spec, segment_class_ids, **params):
    """Whether `cache_dir` holds what `build` with these arguments would write.

    `params`: build's keyword arguments (its batch_size changes nothing).
    """
    params.pop("batch_size", None)
    manifest = read_manifest(cache_dir)
    if manifest is None:
        return False
    key = _key(files, feature_spec, segment_class_ids, **params)
    return {name: manifest.get(name) for name in key} == key


def _shapes(manifest):
    n, w, d, c = (manifest[name] for name in
                  ("num_segments", "window_frames", "feature_size",
                   "num_classes"))
    return {"frames": (n, w, d), "mask": (n, w), "labels": (n, c),
            "weights": (n, c), "rated": (n, c)}


def _write_arrays(directory, batches):
    """Streams each batch's arrays to `<key>.bin` and ids to segment_id.txt.

    Returns the number of segments written.
    """
    count = 0
    with contextlib.ExitStack() as stack:
        handles = {key: stack.enter_context(
            open(os.path.join(directory, key + ".bin"), "wb"))
            for key in STORED}
        ids = stack.enter_context(open(os.path.join(directory, SEGMENT_IDS),
                                       "wb"))
        for batch in batches:
            for key, dtype in STORED.items():
                handles[key].write(np.ascontiguousarray(
                    batch[key].numpy(), dtype).tobytes())
            segment_ids = batch["segment_id"].numpy()
            ids.write(b"".join(s + b"\n" for s in segment_ids))
            count += len(segment_ids)
    return count


def _move_into_place(source, cache_dir):
    """Renames `source` to `cache_dir`, replacing an older cache there."""
    old = cache_dir + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(cache_dir):
        os.rename(cache_dir, old)
    os.rename(source, cache_dir)
    shutil.rmtree(old, ignore_errors=True)


def build(cache_dir, files, feature_spec, segment_class_ids, context_frames=0,
          negative_weight=1.0, vocabulary_size=records.NUM_CLASSES,
          compression="auto", skip_corrupt_records=False, batch_size=256):
    """Extracts the rated segments of `files` into `cache_dir`; the manifest.

    Reads through `reader.iterate`, so bad input raises the records view's
    `reader.InputError` naming file and record.
    """
    if not files:
        raise ValueError("no input files for the segment cache")
    key = _key(files, feature_spec, segment_class_ids, context_frames,
               negative_weight, vocabulary_size, compression,
               skip_corrupt_records)  # before reading: a later edit is stale
    dataset = views.rated_segment_dataset(
        None, feature_spec, segment_class_ids, batch_size,
        negative_weight=negative_weight, vocabulary_size=vocabulary_size,
        context_frames=context_frames, files=files, compression=compression,
        skip_corrupt_records=skip_corrupt_records, quantized=True)
    cache_dir = cache_dir.rstrip("/")
    tmp_dir = cache_dir + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)  # a killed build's leftovers
    os.makedirs(tmp_dir)
    try:
        count = _write_arrays(tmp_dir, reader.iterate(dataset, files,
                                                      compression))
        if not count:
            raise ValueError(f"no rated segments in {list(files)}")
        manifest = {**key, "num_segments": count,
                    "window_frames": views.SEGMENT_FRAMES + 2 * context_frames,
                    "feature_size": feature_spec.total_size,
                    "num_classes": len(segment_class_ids),
                    "dtypes": {k: v.str for k, v in STORED.items()}}
        with open(os.path.join(tmp_dir, MANIFEST), "w") as handle:
            json.dump(manifest, handle, indent=1)
        _move_into_place(tmp_dir, cache_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return manifest


def ensure(cache_dir, files, feature_spec, segment_class_ids, **params):
    """The manifest of a current cache in `cache_dir`, built first if needed."""
    if is_current(cache_dir, files, feature_spec, segment_class_ids, **params):
        manifest = read_manifest(cache_dir)
        logging.info("segment cache %s is current: %d segments", cache_dir,
                     manifest["num_segments"])
        return manifest
    logging.info("building segment cache %s from %d file(s)", cache_dir,
                 len(files))
    return build(cache_dir, files, feature_spec, segment_class_ids, **params)


def _open(cache_dir):
    """(manifest, {key: read-only memmap}, segment ids: numpy bytes array)."""
    manifest = read_manifest(cache_dir)
    if manifest is None:
        raise FileNotFoundError(f"no segment cache in {cache_dir} (build it "
                                "with segment_cache.ensure)")
    arrays = {key: np.memmap(os.path.join(cache_dir, key + ".bin"),
                             STORED[key], mode="r", shape=shape)
              for key, shape in _shapes(manifest).items()}
    with open(os.path.join(cache_dir, SEGMENT_IDS), "rb") as handle:
        segment_ids = np.array(handle.read().split(b"\n")[:-1])
    if len(segment_ids) != manifest["num_segments"]:
        raise ValueError(f"{cache_dir}/{SEGMENT_IDS}: {len(segment_ids)} ids "
                         f"for {manifest['num_segments']} segments")
    return manifest, arrays, segment_ids


def dataset(cache_dir, batch_size, shuffle=False, seed=None, repeat=False):
    """Batches of cached segments, as the records view with `quantized=True`.

    Shuffling is over all N segments (indices only: 8 bytes each), reshuffled
    every epoch; each batch is one sorted gather from the memory maps.
    """
    manifest, arrays, segment_ids = _open(cache_dir)
    num_segments = manifest["num_segments"]
    shapes = {**_shapes(manifest), "segment_id": (num_segments,)}
    keys = list(STORED) + ["segment_id"]
    dtypes = [READ_AS[key] for key in STORED] + [tf.string]

    def gather(index):
        index = np.sort(index)  # memory locality
        return tuple([np.asarray(arrays[key][index],
                                 READ_AS[key].as_numpy_dtype)
                      for key in STORED] + [segment_ids[index]])

    def to_batch(index):
        values = tf.numpy_function(gather, [index], dtypes, stateful=False)
        for key, value in zip(keys, values):
            value.set_shape((None,) + shapes[key][1:])
        return dict(zip(keys, values))

    indices = tf.data.Dataset.range(num_segments)
    if shuffle:
        indices = indices.shuffle(num_segments, seed=seed,
                                  reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    return indices.batch(batch_size).map(
        to_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE)
