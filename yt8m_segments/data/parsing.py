"""Parse a batch of serialized records in one op (frame-level or video-level).

Batched (vectorized) parsing amortises per-call overhead over many records.
Every check names the file and record index of each offending record, which
travel with the records from `reader.record_dataset`.
"""

import tensorflow as tf

from yt8m_segments.data import records

SEGMENT_CONTEXT = ("segment_start_times", "segment_labels", "segment_scores")


def assert_records(problems, files, indices, ids):
    """One assertion for many per-record checks, naming the failing records.

    `problems` is a list of (ok [B] bool, message). One Assert per batch,
    fed only strings: tf.debugging.Assert wraps itself in a conditional (slow
    inside tf.data) unless all its data are strings or int32.
    """
    problem = tf.fill(tf.shape(files), "")
    for ok, message in reversed(problems):
        problem = tf.where(ok, problem, message)
    bad = tf.strings.length(problem) > 0
    return tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [tf.strings.reduce_join(tf.unique(tf.boolean_mask(problem, bad))[0],
                                separator="; "),
         "file:", tf.boolean_mask(files, bad), "record:",
         tf.strings.as_string(tf.boolean_mask(indices, bad)), "video id:",
         tf.boolean_mask(ids, bad)],
        summarize=10)


def any_per_record(flags, row_splits):
    """[B] bool: whether any of the flat per-item `flags` of each record is set.

    Counts set flags with one cumsum and reads each record's count at its
    row splits: a segment max over per-frame row ids costs several times more.
    """
    counts = tf.concat([[0], tf.cumsum(tf.cast(flags, tf.int32))], axis=0)
    return tf.gather(counts, row_splits[1:]) > tf.gather(counts, row_splits[:-1])


def label_problem(labels, num_classes, what="label"):
    """A check (assert_records) that ragged `labels` [B, None] lie in
    [0, num_classes)."""
    outside = any_per_record(
        (labels.flat_values < 0) | (labels.flat_values >= num_classes),
        labels.row_splits)
    return (tf.logical_not(outside),
            f"{what} id outside the {num_classes}-class vocabulary")


def parse_frame_batch(files, indices, serialized, feature_spec,
                      with_segments=False, num_classes=None):
    """Parse [B] records; frames stay serialized until a view picks them.

    Returns a dict: `file`, `record` (the inputs), `id` [B] string, `labels`
    ragged int64 [B, None], `num_frames` int32 [B], `row_splits` int64
    [B + 1] (video b's frames are flat frames row_splits[b]:row_splits[b+1])
    and `frame_bytes`, one flat string tensor [sum(num_frames)] per feature
    in `feature_spec` order (decode with `gather_frames`: views decode only
    the frames they keep); with `with_segments` also ragged
    `segment_start_times`, `segment_labels` (int64) and `segment_scores`
    (float32).

    Fails, naming file and record, on: a missing feature list or zero frames,
    a frame of the wrong byte length, feature lists of different lengths, a
    missing id, a label or segment label id outside [0, num_classes),
    segment fields of different lengths, a segment start outside the video
    or off the 5-frame grid, a segment score other than 0 or 1.
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
    first = sequences[feature_spec.names[0]]
    num_frames = tf.cast(first.row_lengths(), tf.int32)
    problems = [
        (tf.strings.length(ids) > 0, "record has no id"),
        (num_frames > 0, f"no frames (feature list '{feature_spec.names[0]}' "
                         "missing or empty; a 2018 video-level record is "
                         "read by train.py --frame_features=false)"),
    ]
    for name, size in zip(feature_spec.names, feature_spec.sizes):
        ragged = sequences[name]
        problems.append((
            tf.equal(tf.cast(ragged.row_lengths(), tf.int32), num_frames),
            f"feature list '{name}' is missing or has a different number of "
            f"frames than '{feature_spec.names[0]}'"))
        wrong_size = any_per_record(
            tf.strings.length(ragged.flat_values) != size, ragged.row_splits)
        problems.append((tf.logical_not(wrong_size),
                         f"a '{name}' frame is not {size} bytes"))
    if num_classes is not None:
        problems.append(label_problem(context["labels"], num_classes))
    if with_segments:
        problems.extend(_segment_problems(context, num_frames))
        if num_classes is not None:
            problems.append(label_problem(context["segment_labels"],
                                           num_classes, "segment label"))
    checks = [assert_records(problems, files, indices, ids)]

    with tf.control_dependencies(checks):
        # Everything downstream waits for the checks, not only the frames.
        frame_bytes = tuple(tf.identity(sequences[name].flat_values)
                            for name in feature_spec.names)
        checked = {key: value.with_flat_values(tf.identity(value.flat_values))
                   for key, value in context.items()
                   if isinstance(value, tf.RaggedTensor)}
    parsed = {"file": files, "record": indices, "id": ids,
              "labels": checked["labels"], "frame_bytes": frame_bytes,
              "row_splits": tf.cast(first.row_splits, tf.int64),
              "num_frames": num_frames}
    if with_segments:
        parsed.update({key: checked[key] for key in SEGMENT_CONTEXT})
    return parsed


def parse_video_level_batch(files, indices, serialized, feature_spec,
                            num_classes=None):
    """Parse [B] 2018 video-level records (`tf.train.Example`) in one op.

    Each record holds `id`, `labels` and one float list per feature of
    `feature_spec` (e.g. `mean_rgb` 1024, `mean_audio` 128: already
    dequantized means over the video's frames). Returns `file`, `record`,
    `id` [B], ragged `labels` [B, None] and `features` float32 [B, D], the
    features concatenated in `feature_spec` order.

    Fails, naming file and record, on: a missing id, a feature missing or
    not of its size (a frame-level record read here has none), a NaN or
    infinite feature value, a label id outside [0, num_classes).
    """
    spec = {"id": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "labels": tf.io.RaggedFeature(tf.int64)}
    spec.update({name: tf.io.RaggedFeature(tf.float32)
                 for name in feature_spec.names})
    parsed = tf.io.parse_example(serialized, spec)
    ids = parsed["id"]
    problems = [(tf.strings.length(ids) > 0, "record has no id")]
    for name, size in zip(feature_spec.names, feature_spec.sizes):
        problems.append((
            tf.equal(parsed[name].row_lengths(), size),
            f"feature '{name}' is missing or not {size} floats (video-level "
            "records are tf.train.Example with one float list per feature)"))
        # One NaN would turn every weight it reaches into NaN, silently.
        problems.append((
            tf.logical_not(any_per_record(
                tf.logical_not(tf.math.is_finite(parsed[name].flat_values)),
                parsed[name].row_splits)),
            f"feature '{name}' holds NaN or infinity"))
    if num_classes is not None:
        problems.append(label_problem(parsed["labels"], num_classes))
    with tf.control_dependencies([assert_records(problems, files, indices, ids)]):
        features = tf.concat(
            [tf.reshape(parsed[name].flat_values, [-1, size])
             for name, size in zip(feature_spec.names, feature_spec.sizes)],
            axis=1)
        labels = parsed["labels"].with_flat_values(
            tf.identity(parsed["labels"].flat_values))
    return {"file": files, "record": indices, "id": ids, "labels": labels,
            "features": features}


def gather_frames(parsed, flat_index):
    """uint8 frames [..., D] at flat frame indices `flat_index` [...].

    Gathers the serialized frames first and decodes only those: a rated
    segment or a sampled frame needs a few frames of a long video.
    """
    return tf.concat([tf.io.decode_raw(tf.gather(values, flat_index), tf.uint8)
                      for values in parsed["frame_bytes"]], axis=-1)


def dense_frame_index(parsed, max_frames=None):
    """[B, T] flat frame index of every video's frames and [B, T] mask.

    T is the longest video (at most `max_frames`); positions past a video's
    end repeat its last frame and are masked.
    """
    num_frames = parsed["num_frames"]
    if max_frames is not None:
        num_frames = tf.minimum(num_frames, max_frames)
    return frame_index(parsed["row_splits"][:-1],
                       tf.range(tf.reduce_max(num_frames))[None, :],
                       num_frames)


def frame_index(first, positions, num_frames):
    """Flat frame index and mask of `positions` [B, N] within videos.

    Video b's frames are flat frames first[b] (int64) onwards, num_frames[b]
    of them; positions past its end repeat its last frame and are masked.
    """
    mask = positions < num_frames[:, None]
    local = tf.minimum(positions, num_frames[:, None] - 1)
    return first[:, None] + tf.cast(local, first.dtype), mask


def dequantize_masked(raw, mask):
    """uint8 frames [..., D] -> float32, zero where `mask` [...] is False."""
    frames = records.dequantize(tf.cast(raw, tf.float32))
    return frames * tf.cast(mask, tf.float32)[..., None]


def model_inputs(batch):
    """{"frames", "mask"} of a view's batch, ready for a model.

    Views yield quantized uint8 frames (a quarter of float32's bytes through
    the input pipeline and onto the accelerator); they are dequantized here,
    inside the model step, with padding zeroed. Float frames pass unchanged.
    """
    frames, mask = batch["frames"], batch["mask"]
    if frames.dtype == tf.uint8:
        frames = dequantize_masked(frames, mask)
    return {"frames": frames, "mask": mask}


def mean_frame(inputs):
    """{"frames", "mask"} -> the mean of the real frames as one frame [B, 1, D].

    What a model trained on the video-level records' means
    (`views.video_level_dataset`) reads: its per-frame L2 norm then sees
    the normalised mean, as in training, not the mean of normalised frames.
    """
    mask = tf.cast(inputs["mask"], inputs["frames"].dtype)[..., None]
    total = tf.reduce_sum(inputs["frames"] * mask, axis=1, keepdims=True)
    frames = total / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
    return {"frames": frames, "mask": tf.ones(tf.shape(frames)[:2], tf.bool)}


def _segment_problems(context, num_frames):
    """Segment checks on flat values: ragged broadcasting is slow in tf.data."""
    starts = context["segment_start_times"]
    same_length = (
        tf.equal(starts.row_lengths(), context["segment_labels"].row_lengths())
        & tf.equal(starts.row_lengths(), context["segment_scores"].row_lengths()))
    rows = starts.value_rowids()
    length = tf.cast(tf.gather(num_frames, rows), tf.int64)
    outside = any_per_record(
        (starts.flat_values < 0) | (starts.flat_values >= length),
        starts.row_splits)
    inside = tf.logical_not(outside)
    # A start off the 5-frame grid names a window no submission can name, and
    # a score other than 0 or 1 would be read as a positive or as unrated:
    # either would change MAP silently.
    on_grid = tf.logical_not(any_per_record(
        tf.not_equal(starts.flat_values % records.FRAMES_PER_SEGMENT, 0),
        starts.row_splits))
    scores = context["segment_scores"]
    binary = tf.logical_not(any_per_record(
        tf.logical_not(tf.equal(scores.flat_values, 0.0)
                       | tf.equal(scores.flat_values, 1.0)),
        scores.row_splits))
    return [(same_length, "segment_start_times, segment_labels and "
             "segment_scores have different lengths"),
            (inside, "segment start at or past the end of the video"),
            (on_grid, "segment start not a multiple of "
             f"{records.FRAMES_PER_SEGMENT} frames"),
            (binary, "segment score not 0 or 1")]
