"""tf.data views over frame-level records: whole videos, rated segments, test windows.

Every view yields dicts of dense tensors with a boolean `mask` over frames, so
padding never enters pooled outputs or batch statistics downstream.
"""

import tensorflow as tf

from yt8m_segments.data import parsing
from yt8m_segments.data import records

SEGMENT_FRAMES = records.FRAMES_PER_SEGMENT


def list_files(pattern):
    """Sorted files matching a (comma-separated) glob; a clear error if none do."""
    files = []
    for part in pattern.split(","):
        files.extend(tf.io.gfile.glob(part.strip()))
    if not files:
        raise FileNotFoundError(f"no file matches the data pattern '{pattern}'")
    return sorted(set(files))


def _records(pattern, shuffle, seed):
    files = list_files(pattern)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed,
                                  reshuffle_each_iteration=True)
    return dataset.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)


def _multi_hot(positions, depth):
    """[depth] float vector with 1 at `positions`; all zeros when there are none."""
    return tf.minimum(tf.reduce_sum(tf.one_hot(positions, depth), axis=0), 1.0)


def _video_labels(video_id, labels, num_classes):
    parsing.check(
        tf.reduce_all((labels >= 0) & (labels < num_classes)),
        f"label id outside the {num_classes}-class vocabulary", video_id,
        "labels:", labels)
    return _multi_hot(labels, num_classes)


def _windows(frames, num_frames, starts):
    """Gather 5-frame windows at `starts`; frames past the end are zero and masked."""
    index = tf.cast(starts[:, None], tf.int32) + tf.range(SEGMENT_FRAMES)[None, :]
    mask = index < num_frames
    gathered = tf.gather(frames, tf.minimum(index, num_frames - 1))
    gathered = gathered * tf.cast(mask, gathered.dtype)[..., None]
    return gathered, mask


def video_dataset(pattern, feature_spec, num_classes, max_frames, batch_size,
                  shuffle=False, seed=None, repeat=False):
    """Whole videos for pretraining on video-level labels.

    Yields `frames` [B, T, D] (T = longest video in the batch, at most
    `max_frames`), `mask` [B, T] bool, `labels` [B, num_classes] multi-hot,
    `id` [B].
    """
    def to_example(serialized):
        parsed = parsing.parse_frame_example(serialized, feature_spec)
        frames = parsed["frames"][:max_frames]
        return {
            "id": parsed["id"],
            "frames": frames,
            "mask": tf.ones([tf.shape(frames)[0]], tf.bool),
            "labels": _video_labels(parsed["id"], parsed["labels"],
                                    num_classes),
        }

    dataset = _records(pattern, shuffle, seed)
    if repeat:
        dataset = dataset.repeat()
    if shuffle:
        dataset = dataset.shuffle(4 * batch_size, seed=seed)
    dataset = dataset.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.padded_batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _class_positions(segment_class_ids, vocabulary_size):
    """Dense map class id -> position among the segment classes, -1 elsewhere."""
    positions = [-1] * vocabulary_size
    for position, class_id in enumerate(segment_class_ids):
        positions[int(class_id)] = position
    return tf.constant(positions, tf.int32)


def rated_segment_dataset(pattern, feature_spec, segment_class_ids,
                          batch_size, negative_weight=1.0,
                          vocabulary_size=records.NUM_CLASSES, shuffle=False,
                          seed=None, repeat=False):
    """Rated 5-frame segments for fine-tuning, one example per distinct segment.

    Label and weight vectors run over the segment classes (in
    `segment_class_ids` order). A rated pair gets weight 1 and its score as
    label. Unrated pairs get weight 0, except the 2nd-place paper's weak
    negatives: classes outside the video's labels share `negative_weight`
    equally, label 0 (Loss = CE(B) + alpha * mean CE(A\\C, 0)).

    Yields `frames` [B, 5, D], `mask` [B, 5], `labels`, `weights` and
    `rated` (bool) [B, num_segment_classes], `segment_id` [B]
    ("<video id>:<start>").
    """
    num_segment_classes = len(segment_class_ids)
    class_positions = _class_positions(segment_class_ids, vocabulary_size)

    def to_segments(serialized):
        parsed = parsing.parse_frame_example(serialized, feature_spec,
                                             with_segments=True)
        video_id = parsed["id"]
        starts, inverse = tf.unique(parsed["segment_start_times"])
        rated_positions = tf.gather(class_positions,
                                    parsed["segment_labels"])
        parsing.check(tf.reduce_all(rated_positions >= 0),
                      "segment label is not a segment class", video_id,
                      "segment_labels:", parsed["segment_labels"])
        num_segments = tf.shape(starts)[0]
        pair_index = tf.stack([inverse, rated_positions], axis=1)
        labels = tf.tensor_scatter_nd_max(
            tf.zeros([num_segments, num_segment_classes]), pair_index,
            parsed["segment_scores"])

        video_positions = tf.gather(class_positions, parsed["labels"])
        video_positions = tf.boolean_mask(video_positions, video_positions >= 0)
        outside = 1.0 - _multi_hot(video_positions, num_segment_classes)
        weak_negative = outside * negative_weight / tf.maximum(
            tf.reduce_sum(outside), 1.0)
        weights = tf.tensor_scatter_nd_update(
            tf.tile(weak_negative[None, :], [num_segments, 1]), pair_index,
            tf.ones_like(parsed["segment_scores"]))

        frames, mask = _windows(parsed["frames"], parsed["num_frames"], starts)
        rated = tf.tensor_scatter_nd_update(
            tf.zeros([num_segments, num_segment_classes], tf.bool), pair_index,
            tf.ones_like(parsed["segment_labels"], tf.bool))
        return {
            "frames": frames,
            "mask": mask,
            "labels": labels,
            "weights": weights,
            "rated": rated,
            "segment_id": _segment_ids(video_id, starts),
        }

    dataset = _records(pattern, shuffle, seed)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.map(to_segments, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.unbatch()
    if shuffle:
        dataset = dataset.shuffle(16 * batch_size, seed=seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _segment_ids(video_id, starts):
    return tf.strings.join([
        tf.fill(tf.shape(starts), video_id), tf.strings.as_string(starts)],
        separator=":")


def test_segment_dataset(pattern, feature_spec, batch_size):
    """Every 5-frame window of every video, from frame 0, in file order.

    The partial last window is zero-padded and masked, as the starter code
    pads it. Yields `frames` [B, 5, D], `mask` [B, 5], `segment_id` [B].
    """
    def to_windows(serialized):
        parsed = parsing.parse_frame_example(serialized, feature_spec)
        num_frames = parsed["num_frames"]
        num_windows = (num_frames + SEGMENT_FRAMES - 1) // SEGMENT_FRAMES
        starts = tf.range(num_windows, dtype=tf.int64) * SEGMENT_FRAMES
        frames, mask = _windows(parsed["frames"], num_frames, starts)
        return {
            "frames": frames,
            "mask": mask,
            "segment_id": _segment_ids(parsed["id"], starts),
        }

    dataset = _records(pattern, shuffle=False, seed=None)
    dataset = dataset.map(to_windows, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.unbatch().batch(batch_size).prefetch(tf.data.AUTOTUNE)
