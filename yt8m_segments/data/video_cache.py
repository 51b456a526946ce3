"""An on-disk cache of the training videos' frames: pretraining without parsing.

Pretraining reads every video every epoch. From records each one is read,
checksummed and parsed whole (~4K videos/s on 2 cores, CPU the model step
needs too), though a sampled epoch keeps 30 of its ~115 frames. `build` runs
the records view (`views.video_dataset`, quantized) once and stores each
video's first `max_frames` frames back to back; `dataset` then picks frames
through memory maps, one numpy gather per batch, shuffling over all videos.
The frames are as large as the records' (uint8, 1,152 bytes a frame: ~1.4 TB
for the whole 2018 training set), so it is for what fits a local disk.

With `video_level=True` it holds the 2018 video-level records instead
(`views.video_level_dataset`: one float32 frame of feature means per video,
~4.6 KB: ~28 GB for the 6.1M videos), whose reading is bound by tf.data's
per-record cost (~8K records/s on 2 cores), not by their size.

A cache is a local directory (built atomically by `array_cache`) with one
part per input file, in file order, video i of a part = the file's i-th:

  parts/NNNNN/frames.bin        uint8 [F, D]  the part's frames, video after
                                              video (float32 means for
                                              video-level records)
  parts/NNNNN/row_splits.bin    int64 [N + 1] video i: frames
                                              row_splits[i]:row_splits[i+1]
  parts/NNNNN/labels.bin        int32 [L]     label ids, video after video
  parts/NNNNN/label_splits.bin  int64 [N + 1]
  parts/NNNNN/video_id.txt      N lines
  manifest.json                 totals, per-part sizes, the build parameters,
                                the input files' fingerprint (path, size,
                                mtime_ns)

A build is long at scale, so it resumes: kill it and run it again, and the
files it finished are not read again (`array_cache.build_part`).
"""

import concurrent.futures
import os

import numpy as np
import tensorflow as tf

from yt8m_segments.data import array_cache
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views

FORMAT_VERSION = 2  # 2: one part per input file
VIDEO_IDS = "video_id"
STORED = {"frames": np.dtype("u1"), "row_splits": np.dtype("<i8"),
          "labels": np.dtype("<i4"), "label_splits": np.dtype("<i8")}
VIDEO_LEVEL_FRAMES = np.dtype("<f4")


def _key(files, feature_spec, max_frames=records.MAX_FRAMES,
         vocabulary_size=records.NUM_CLASSES, compression="auto",
         skip_corrupt_records=False, video_level=False):
    """What a cache's contents depend on, as its manifest stores it."""
    return array_cache.make_key(
        files, format_version=FORMAT_VERSION,
        feature_names=list(feature_spec.names),
        feature_sizes=list(feature_spec.sizes), max_frames=int(max_frames),
        vocabulary_size=int(vocabulary_size), compression=compression,
        skip_corrupt_records=bool(skip_corrupt_records),
        video_level=bool(video_level))


def _write_arrays(writer, batches):
    """Streams frames, labels and ids; the sizes written."""
    frame_counts, label_counts = [], []
    for batch in batches:
        mask = batch["mask"].numpy()
        writer.append("frames", batch["frames"].numpy()[mask])
        frame_counts.append(mask.sum(axis=1))
        rows, label_ids = np.nonzero(batch["labels"].numpy())
        writer.append("labels", label_ids)
        label_counts.append(np.bincount(rows, minlength=len(mask)))
        writer.append_lines(VIDEO_IDS, batch["id"].numpy())
    frame_counts = np.concatenate(frame_counts or [[]]).astype(np.int64)
    label_counts = np.concatenate(label_counts or [[]]).astype(np.int64)
    writer.append("row_splits", np.concatenate([[0], np.cumsum(frame_counts)]))
    writer.append("label_splits",
                  np.concatenate([[0], np.cumsum(label_counts)]))
    return {"num_videos": len(frame_counts),
            "num_frames": int(frame_counts.sum()),
            "num_labels": int(label_counts.sum())}


def build(cache_dir, files, feature_spec, max_frames=records.MAX_FRAMES,
          vocabulary_size=records.NUM_CLASSES, compression="auto",
          skip_corrupt_records=False, video_level=False, batch_size=64,
          parallel_files=None):
    """Extracts the videos of `files` into `cache_dir`; the manifest.

    Reads through `reader.iterate`, so bad input raises the records view's
    `reader.InputError` naming file and record; the files finished before
    it stay extracted for the rerun. `video_level`: the files are
    video-level records (`feature_spec` then names their features).
    `parallel_files` files are extracted at once (default: a quarter of the
    cores, at least 1); the cache is the same either way.
    """
    parallel_files = parallel_files or max(1, (os.cpu_count() or 1) // 4)
    if not files:
        raise ValueError("no input files for the video cache")
    key = _key(files, feature_spec, max_frames, vocabulary_size, compression,
               skip_corrupt_records, video_level)  # a later edit is stale
    stored = ({**STORED, "frames": VIDEO_LEVEL_FRAMES} if video_level
              else STORED)

    def write_file(path, directory):
        options = dict(files=[path], compression=compression,
                       skip_corrupt_records=skip_corrupt_records)
        if video_level:
            dataset = views.video_level_dataset(
                None, feature_spec, vocabulary_size, batch_size, **options)
        else:
            dataset = views.video_dataset(
                None, feature_spec, vocabulary_size, max_frames, batch_size,
                quantized=True, **options)
        with array_cache.Writer(directory, stored, [VIDEO_IDS]) as writer:
            return _write_arrays(writer, reader.iterate(dataset, [path],
                                                        compression))

    def write(directory):
        with concurrent.futures.ThreadPoolExecutor(parallel_files) as pool:
            parts = list(pool.map(
                lambda index: array_cache.build_part(
                    directory, index,
                    lambda part_dir: write_file(files[index], part_dir)),
                range(len(files))))
        totals = {name: sum(part[name] for part in parts)
                  for name in ("num_videos", "num_frames", "num_labels")}
        if not totals["num_videos"]:
            raise ValueError(f"no videos in {list(files)}")
        return {**totals, "parts": parts,
                "feature_size": feature_spec.total_size,
                "dtypes": {k: v.str for k, v in stored.items()}}
    return array_cache.build(cache_dir, key, write, resumable=True)


def is_current(cache_dir, files, feature_spec, **params):
    """Whether `cache_dir` holds what `build` with these arguments would write
    (its batch_size and parallel_files change nothing)."""
    params.pop("batch_size", None)
    params.pop("parallel_files", None)
    return array_cache.is_current(cache_dir,
                                  _key(files, feature_spec, **params))


def ensure(cache_dir, files, feature_spec, **params):
    """The manifest of a current cache in `cache_dir`, built first if needed."""
    return array_cache.ensure(
        cache_dir, is_current(cache_dir, files, feature_spec, **params),
        lambda: build(cache_dir, files, feature_spec, **params), "video cache")


def _open_parts(cache_dir, manifest, stored):
    """Per-part frame memory maps, and the parts' row splits (offset into
    one flat frame index), labels, label splits and ids joined (small)."""
    frames, row_splits, labels, label_splits, ids = [], [0], [], [0], []
    frame_offset = label_offset = 0
    for index, part in enumerate(manifest["parts"]):
        directory = array_cache.part_directory(cache_dir, index)
        num_videos = part["num_videos"]

        def array(name, shape, directory=directory):
            return array_cache.open_array(directory, name, stored[name],
                                          shape)
        frames.append(array("frames", (part["num_frames"],
                                       manifest["feature_size"])))
        row_splits.append(np.asarray(array("row_splits", (num_videos + 1,)))[1:]
                          + frame_offset)
        labels.append(np.asarray(array("labels", (part["num_labels"],))))
        label_splits.append(np.asarray(
            array("label_splits", (num_videos + 1,)))[1:] + label_offset)
        ids.append(array_cache.read_lines(directory, VIDEO_IDS, num_videos))
        frame_offset += part["num_frames"]
        label_offset += part["num_labels"]
    return (frames, np.hstack(row_splits).astype(np.int64),
            np.concatenate(labels).astype(np.int64),
            np.hstack(label_splits).astype(np.int64),
            np.concatenate(ids))


def dataset(cache_dir, batch_size, num_sample_frames=None,
            sample_random_frames=False, shuffle=False, seed=None,
            repeat=False):
    """Batches of cached videos, as `views.video_dataset(quantized=True)`.

    `frames` uint8 [B, T or N, D], `mask`, `labels` multi-hot over the
    vocabulary it was built with, `id`; frames sampled as that view samples
    them (`views.video_frame_index`). A video-level cache yields float32
    frames, one per video, as `views.video_level_dataset`.
    """
    manifest = array_cache.open_manifest(cache_dir, "video cache")
    num_videos = manifest["num_videos"]
    stored = {name: np.dtype(dtype)
              for name, dtype in manifest["dtypes"].items()}
    frames_of_part, row_splits, all_labels, label_splits, all_ids = (
        _open_parts(cache_dir, manifest, stored))
    # Flat frame f is in part p where part_starts[p] <= f < part_starts[p+1].
    part_starts = np.cumsum([0] + [part["num_frames"]
                                   for part in manifest["parts"]])
    num_classes = manifest["vocabulary_size"]
    feature_size = manifest["feature_size"]
    row_splits_tensor = tf.constant(row_splits)

    def gather(index, flat_index):
        flat = flat_index.ravel()
        order = np.argsort(flat)  # memory locality
        ordered = flat[order]
        part_of = np.searchsorted(part_starts, ordered, side="right") - 1
        frames = np.empty((len(flat), feature_size), stored["frames"])
        for part in np.unique(part_of):
            chosen = part_of == part
            frames[order[chosen]] = frames_of_part[part][
                ordered[chosen] - part_starts[part]]
        starts = label_splits[index]
        counts = label_splits[index + 1] - starts
        # Label j of video b sits at starts[b] + j.
        within = np.arange(counts.sum()) - np.repeat(
            np.cumsum(counts) - counts, counts)
        video_labels = all_labels[np.repeat(starts, counts) + within]
        rows = np.repeat(np.arange(len(index)), counts)
        return (frames.reshape(flat_index.shape + (feature_size,)),
                all_ids[index], video_labels.astype(np.int64), rows)

    def to_batch(index):
        first = tf.gather(row_splits_tensor, index)
        num_frames = tf.cast(tf.gather(row_splits_tensor, index + 1) - first,
                             tf.int32)
        flat_index, mask = views.video_frame_index(
            first, num_frames, num_sample_frames, sample_random_frames, seed,
            views.batch_key(tf.strings.as_string(index)))
        frames, ids, labels, rows = tf.numpy_function(
            gather, [index, flat_index],
            [tf.as_dtype(stored["frames"].type), tf.string, tf.int64,
             tf.int64], stateful=False)
        frames.set_shape([None, None, feature_size])
        for vector in (ids, labels, rows):
            vector.set_shape([None])
        return {"id": ids, "frames": frames, "mask": mask,
                "labels": views.multi_hot(labels, rows, tf.shape(index)[0],
                                          num_classes)}

    return array_cache.row_batches(num_videos, batch_size, to_batch, shuffle,
                                   seed, repeat)
