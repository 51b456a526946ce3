"""Parse one serialized frame-level SequenceExample into dequantized tensors."""

import tensorflow as tf

from yt8m_segments.data import records

SEGMENT_CONTEXT = ("segment_start_times", "segment_labels", "segment_scores")


def check(condition, message, video_id, *values):
    """Fail the input pipeline with `message`, the video id and `values`."""
    tf.debugging.Assert(condition, [message, "in video", video_id, *values],
                        summarize=20)


def parse_frame_example(serialized, feature_spec, with_segments=False):
    """Decode a frame-level record.

    Returns a dict: `id` (string scalar), `labels` (int64 [L]), `frames`
    (float32 [T, sum(feature sizes)], dequantized, features concatenated in
    `feature_spec` order), `num_frames` (int32 scalar); with `with_segments`
    also `segment_start_times`, `segment_labels` (int64 [R]) and
    `segment_scores` (float32 [R]).
    """
    context_features = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "labels": tf.io.VarLenFeature(tf.int64),
    }
    if with_segments:
        context_features["segment_start_times"] = tf.io.VarLenFeature(tf.int64)
        context_features["segment_labels"] = tf.io.VarLenFeature(tf.int64)
        context_features["segment_scores"] = tf.io.VarLenFeature(tf.float32)
    sequence_features = {
        name: tf.io.FixedLenSequenceFeature([], tf.string)
        for name in feature_spec.names
    }
    context, sequences = tf.io.parse_single_sequence_example(
        serialized, context_features=context_features,
        sequence_features=sequence_features)

    video_id = context["id"]
    decoded = []
    for name, size in zip(feature_spec.names, feature_spec.sizes):
        frames = tf.io.decode_raw(sequences[name], tf.uint8)
        frames = tf.ensure_shape(frames, [None, size])
        decoded.append(records.dequantize(tf.cast(frames, tf.float32)))
    num_frames = tf.shape(decoded[0])[0]
    for name, frames in zip(feature_spec.names[1:], decoded[1:]):
        check(tf.equal(tf.shape(frames)[0], num_frames),
              f"feature lists {feature_spec.names[0]} and {name} have "
              "different frame counts", video_id)
    parsed = {
        "id": video_id,
        "labels": tf.sparse.to_dense(context["labels"]),
        "frames": tf.concat(decoded, axis=1),
        "num_frames": num_frames,
    }
    if with_segments:
        for key in SEGMENT_CONTEXT:
            parsed[key] = tf.sparse.to_dense(context[key])
    return parsed
