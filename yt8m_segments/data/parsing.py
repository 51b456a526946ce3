"""Parse a batch of serialized frame-level SequenceExamples in one op.

Batched (vectorized) parsing amortises per-call overhead over many records.
Every check names the file and record index of each offending record, which
travel with the records from `reader.record_dataset`.
"""

import tensorflow as tf

from yt8m_segments.data import records

SEGMENT_CONTEXT = ("segment_start_times", "segment_labels", "segment_scores")


def check(ok, message, files, indices, ids):
    """Fail the pipeline unless `ok` [B] holds, naming the failing records."""
    bad = tf.logical_not(ok)
    return tf.debugging.Assert(
        tf.reduce_all(ok),
        [message, "file:", tf.boolean_mask(files, bad), "record:",
         tf.boolean_mask(indices, bad), "video id:", tf.boolean_mask(ids, bad)],
        summarize=10)


def parse_frame_batch(files, indices, serialized, feature_spec,
                      with_segments=False, num_classes=None):
    """Decode [B] records into ragged, dequantized tensors.

    Returns a dict: `file`, `record` (the inputs), `id` [B] string, `labels`
    ragged int64 [B, None], `frames` ragged float32 [B, None, D] (features
    concatenated in `feature_spec` order), `num_frames` int32 [B]; with
    `with_segments` also ragged `segment_start_times`, `segment_labels`
    (int64) and `segment_scores` (float32).

    Fails, naming file and record, on: a missing feature list or zero frames,
    a frame of the wrong byte length, feature lists of different lengths, a
    missing id, a label id outside [0, num_classes), segment fields of
    different lengths or a segment start outside the video.
    """
    context_features = {
        "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "labels": tf.io.RaggedFeature(tf.int64),
    }
    if with_segments:
        context_features["segment_start_times"] = tf.io.RaggedFeature(tf.int64)
        context_features["segment_labels"] = tf.io.RaggedFeature(tf.int64)
        context_features["segment_scores"] = tf.io.RaggedFeature(tf.float32)
    sequence_features = {name: tf.io.RaggedFeature(tf.string)
                         for name in feature_spec.names}
    context, sequences, _ = tf.io.parse_sequence_example(
        serialized, context_features=context_features,
        sequence_features=sequence_features)

    ids = context["id"]
    checks = [check(tf.strings.length(ids) > 0, "record has no id",
                    files, indices, ids)]
    first = sequences[feature_spec.names[0]]
    num_frames = tf.cast(first.row_lengths(), tf.int32)
    checks.append(check(num_frames > 0, f"no frames (feature list "
                        f"'{feature_spec.names[0]}' missing or empty)",
                        files, indices, ids))
    for name, size in zip(feature_spec.names, feature_spec.sizes):
        ragged = sequences[name]
        checks.append(check(
            tf.equal(tf.cast(ragged.row_lengths(), tf.int32), num_frames),
            f"feature list '{name}' is missing or has a different number of "
            f"frames than '{feature_spec.names[0]}'", files, indices, ids))
        wrong = tf.strings.length(ragged.flat_values) != size
        wrong_rows = tf.unique(tf.boolean_mask(ragged.value_rowids(), wrong))[0]
        checks.append(tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(wrong)),
            [f"a '{name}' frame is not {size} bytes:", "file:",
             tf.gather(files, wrong_rows), "record:",
             tf.gather(indices, wrong_rows), "video id:",
             tf.gather(ids, wrong_rows)], summarize=10))
    labels = context["labels"]
    if num_classes is not None:
        label_ok = tf.reduce_all((labels >= 0) & (labels < num_classes), axis=1)
        checks.append(check(
            label_ok, f"label id outside the {num_classes}-class vocabulary",
            files, indices, ids))

    with tf.control_dependencies(checks):
        decoded = []
        for name in feature_spec.names:
            raw = tf.io.decode_raw(sequences[name].flat_values, tf.uint8)
            decoded.append(records.dequantize(tf.cast(raw, tf.float32)))
        frames = tf.RaggedTensor.from_row_splits(
            tf.concat(decoded, axis=1), first.row_splits, validate=False)
    parsed = {"file": files, "record": indices, "id": context["id"],
              "labels": labels, "frames": frames, "num_frames": num_frames}
    if with_segments:
        parsed.update(_checked_segments(context, num_frames, files, indices))
    return parsed


def _checked_segments(context, num_frames, files, indices):
    ids = context["id"]
    starts = context["segment_start_times"]
    segment_labels = context["segment_labels"]
    scores = context["segment_scores"]
    same_length = (tf.equal(starts.row_lengths(), segment_labels.row_lengths())
                   & tf.equal(starts.row_lengths(), scores.row_lengths()))
    inside = tf.reduce_all(
        (starts >= 0) & (starts < tf.cast(num_frames, tf.int64)[:, None]),
        axis=1)
    checks = [
        check(same_length, "segment_start_times, segment_labels and "
              "segment_scores have different lengths", files, indices, ids),
        check(inside, "segment start at or past the end of the video",
              files, indices, ids),
    ]
    with tf.control_dependencies(checks):
        return {"segment_start_times": tf.identity(starts),
                "segment_labels": tf.identity(segment_labels),
                "segment_scores": tf.identity(scores)}
