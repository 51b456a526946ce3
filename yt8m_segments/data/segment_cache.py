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

Built and checked for staleness by `array_cache` (atomic, keyed by the
input files' fingerprints and the build parameters).
"""

import numpy as np
import tensorflow as tf

from yt8m_segments.data import array_cache
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views

FORMAT_VERSION = 1
SEGMENT_IDS = "segment_id"
# Stored dtype of each array (file `<key>.bin`), and the dtype it is read as.
STORED = {"frames": np.dtype("u1"), "mask": np.dtype("?"),
          "labels": np.dtype("<f2"), "weights": np.dtype("<f2"),
          "rated": np.dtype("?")}
READ_AS = {"frames": tf.uint8, "mask": tf.bool, "labels": tf.float32,
           "weights": tf.float32, "rated": tf.bool}


def _key(files, feature_spec, segment_class_ids, context_frames=0,
         negative_weight=1.0, vocabulary_size=records.NUM_CLASSES,
         compression="auto", skip_corrupt_records=False):
    """What a cache's contents depend on, as its manifest stores it."""
    return array_cache.make_key(
        files, format_version=FORMAT_VERSION,
        feature_names=list(feature_spec.names),
        feature_sizes=list(feature_spec.sizes),
        segment_class_ids=[int(c) for c in segment_class_ids],
        context_frames=int(context_frames),
        negative_weight=float(negative_weight),
        vocabulary_size=int(vocabulary_size), compression=compression,
        skip_corrupt_records=bool(skip_corrupt_records))


def is_current(cache_dir, files, feature_spec, segment_class_ids, **params):
    """Whether `cache_dir` holds what `build` with these arguments would write.

    `params`: build's keyword arguments (its batch_size changes nothing).
    """
    params.pop("batch_size", None)
    return array_cache.is_current(
        cache_dir, _key(files, feature_spec, segment_class_ids, **params))


def _shapes(manifest):
    n, w, d, c = (manifest[name] for name in
                  ("num_segments", "window_frames", "feature_size",
                   "num_classes"))
    return {"frames": (n, w, d), "mask": (n, w), "labels": (n, c),
            "weights": (n, c), "rated": (n, c)}


def _write_arrays(directory, batches):
    """Streams each batch's arrays and segment ids; the number of segments."""
    count = 0
    with array_cache.Writer(directory, STORED, [SEGMENT_IDS]) as writer:
        for batch in batches:
            for key in STORED:
                writer.append(key, batch[key].numpy())
            segment_ids = batch["segment_id"].numpy()
            writer.append_lines(SEGMENT_IDS, segment_ids)
            count += len(segment_ids)
    return count


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

    def write(directory):
        count = _write_arrays(directory, reader.iterate(dataset, files,
                                                        compression))
        if not count:
            raise ValueError(f"no rated segments in {list(files)}")
        return {"num_segments": count,
                "window_frames": views.SEGMENT_FRAMES + 2 * context_frames,
                "feature_size": feature_spec.total_size,
                "num_classes": len(segment_class_ids),
                "dtypes": {k: v.str for k, v in STORED.items()}}
    return array_cache.build(cache_dir, key, write)


def ensure(cache_dir, files, feature_spec, segment_class_ids, **params):
    """The manifest of a current cache in `cache_dir`, built first if needed."""
    return array_cache.ensure(
        cache_dir,
        is_current(cache_dir, files, feature_spec, segment_class_ids,
                   **params),
        lambda: build(cache_dir, files, feature_spec, segment_class_ids,
                      **params), "segment cache")


def _open(cache_dir):
    """(manifest, {key: read-only memmap}, segment ids: numpy bytes array)."""
    manifest = array_cache.open_manifest(cache_dir, "segment cache")
    arrays = {key: array_cache.open_array(cache_dir, key, STORED[key], shape)
              for key, shape in _shapes(manifest).items()}
    return manifest, arrays, array_cache.read_lines(
        cache_dir, SEGMENT_IDS, manifest["num_segments"])


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

    return array_cache.row_batches(num_segments, batch_size, to_batch, shuffle,
                                   seed, repeat)
