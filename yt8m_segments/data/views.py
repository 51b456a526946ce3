"""tf.data views over the records: whole videos, rated segments, test windows.

Records are parsed in batches (`parsing.parse_frame_batch`, or
`parse_video_level_batch` for the 2018 video-level records); every view yields
dicts of dense tensors with a boolean `mask` over frames, so padding never
enters pooled outputs or batch statistics downstream. `frames` are float32,
zero where masked; with `quantized=True` they stay uint8 (a quarter of the
bytes through the pipeline and onto the accelerator, and no dequantizing on
the input side's cores) and `parsing.model_inputs(batch)` dequantizes them
inside the model step (train, inference and eval do). Quantized padding
repeats a real frame until then: only the mask marks it.

Windows: a segment starting at frame s covers frames [s, s + 5); with
`context_frames=n` it also covers n frames before and after, [s - n, s + 5 + n),
frames outside the video masked (4th-place paper: n=5 for orderless models, 15
for recurrent ones). With `per_video=True` the segment views keep each video
whole instead: `frames` [B, T, D] once, plus `window_index` [B, S, W] frame
indices and `window_mask` [B, S, W], so a model can do per-frame work once
per video and then pool each window (`gather_windows`).
"""

import tensorflow as tf

from yt8m_segments.data import parsing
from yt8m_segments.data import reader
from yt8m_segments.data import records

SEGMENT_FRAMES = records.FRAMES_PER_SEGMENT
PARSE_BATCH = 32
list_files = reader.list_files


def _serialized(files, batch_size, shuffle, seed, repeat, compression,
                skip_corrupt_records):
    """Batches of (file, record, serialized), shuffled at record level."""
    dataset = reader.record_dataset(files, shuffle, seed, compression,
                                    skip_corrupt_records)
    if repeat:
        dataset = dataset.repeat()
    if shuffle:
        # Whole serialized videos (~130 KB each at real lengths): keep the
        # buffer to a few batches; files are shuffled and interleaved too.
        dataset = dataset.shuffle(max(4 * batch_size, 256), seed=seed)
    return dataset.batch(batch_size)


def multi_hot(values, rows, num_rows, depth):
    """[num_rows, depth] with 1 at (rows[i], values[i]) for every values[i] >= 0.

    Flat scatter rather than ragged ops, which are slow inside tf.data.
    """
    keep = values >= 0
    index = tf.stack([tf.cast(tf.boolean_mask(rows, keep), tf.int32),
                      tf.cast(tf.boolean_mask(values, keep), tf.int32)], axis=1)
    return tf.tensor_scatter_nd_max(tf.zeros([num_rows, depth]), index,
                                    tf.ones([tf.shape(index)[0]]))


def batch_key(names):
    """An int64 naming a batch by its contents ([B] strings), for stateless
    sampling: the same batch draws the same frames whatever thread maps it."""
    return tf.strings.to_hash_bucket_fast(
        tf.strings.reduce_join(names, separator="\n"), 2 ** 62)


def video_frame_index(first, num_frames, num_sample_frames=None,
                      sample_random_frames=False, seed=None, key=None):
    """[B, N] flat frame index and mask of the frames a video view keeps.

    Video b's frames are flat frames first[b] (int64) onwards, num_frames[b]
    of them. All of them (N = the longest video), or `num_sample_frames`:
    random with replacement (`sample_random_frames`), else one random
    contiguous run, masked past the video's end. With `seed` and `key`
    (`batch_key`) the draw is stateless, a function of both: a parallel map
    then gives the same frames on every run, so a resumed run trains on the
    batches an uninterrupted one would.
    """
    def uniform(shape):
        if seed is None or key is None:
            return tf.random.uniform(shape, seed=seed)
        return tf.random.stateless_uniform(
            shape, tf.stack([tf.constant(seed, tf.int64), key]))

    if not num_sample_frames:
        positions = tf.range(tf.reduce_max(num_frames))[None, :]
    elif sample_random_frames:
        positions = tf.cast(tf.floor(
            uniform([tf.shape(num_frames)[0], num_sample_frames])
            * tf.cast(num_frames, tf.float32)[:, None]), tf.int32)
    else:
        room = tf.maximum(num_frames - num_sample_frames, 0)
        start = tf.cast(tf.floor(
            uniform(tf.shape(num_frames))
            * tf.cast(room + 1, tf.float32)), tf.int32)
        positions = start[:, None] + tf.range(num_sample_frames)[None, :]
    return parsing.frame_index(first, positions, num_frames)


def video_dataset(pattern, feature_spec, num_classes, max_frames, batch_size,
                  shuffle=False, seed=None, repeat=False, num_sample_frames=None,
                  sample_random_frames=False, files=None, compression="auto",
                  skip_corrupt_records=False, quantized=False):
    """Whole videos for pretraining on video-level labels.

    Yields `frames` [B, T, D] (T = longest video in the batch, at most
    `max_frames`), `mask` [B, T] bool, `labels` [B, num_classes] multi-hot,
    `id` [B]. With `num_sample_frames=N` each video gives N frames instead:
    drawn at random with replacement (`sample_random_frames`, as the
    4th-place paper with N=15 and the starter DBoF with N=30) or one random
    contiguous run (masked where the video is shorter than N).
    """
    files = files or list_files(pattern)

    def to_videos(batch_files, batch_records, serialized):
        parsed = parsing.parse_frame_batch(batch_files, batch_records,
                                           serialized, feature_spec,
                                           num_classes=num_classes)
        flat_index, mask = video_frame_index(
            parsed["row_splits"][:-1],
            tf.minimum(parsed["num_frames"], max_frames), num_sample_frames,
            sample_random_frames, seed, batch_key(parsed["id"]))
        num_videos = tf.shape(parsed["num_frames"])[0]
        labels = parsed["labels"]
        return {"id": parsed["id"],
                "frames": parsing.gather_frames(parsed, flat_index),
                "mask": mask,
                "labels": multi_hot(labels.flat_values, labels.value_rowids(),
                                    num_videos, num_classes)}

    dataset = _serialized(files, batch_size, shuffle, seed, repeat,
                          compression, skip_corrupt_records)
    return dataset.map(_dequantized_unless(quantized, to_videos),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(
                           tf.data.AUTOTUNE)


def video_level_dataset(pattern, feature_spec, num_classes, batch_size,
                        shuffle=False, seed=None, repeat=False, files=None,
                        compression="auto", skip_corrupt_records=False):
    """2018 video-level records (`mean_rgb`, `mean_audio`) for pretraining.

    Yields the keys of `video_dataset`, each video as one frame: `frames`
    [B, 1, D] float32 (the record's feature means, in `feature_spec` order),
    `mask` [B, 1] all True, `labels` [B, num_classes] multi-hot, `id` [B].
    A model that averages the real frames (ResNetLike, average pooling)
    then sees exactly the video-level features, and any frame model trains
    on them unchanged; on frame records later it is fed their mean frame
    (`parsing.mean_frame`).
    """
    files = files or list_files(pattern)

    def to_videos(batch_files, batch_records, serialized):
        parsed = parsing.parse_video_level_batch(
            batch_files, batch_records, serialized, feature_spec,
            num_classes=num_classes)
        labels = parsed["labels"]
        num_videos = tf.shape(parsed["id"])[0]
        return {"id": parsed["id"],
                "frames": parsed["features"][:, None, :],
                "mask": tf.ones([num_videos, 1], tf.bool),
                "labels": multi_hot(labels.flat_values, labels.value_rowids(),
                                    num_videos, num_classes)}

    dataset = _serialized(files, batch_size, shuffle, seed, repeat,
                          compression, skip_corrupt_records)
    return dataset.map(to_videos, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def window_indices(num_frames, rows, starts, context_frames=0):
    """Frame indices and mask of windows: [S, 5 + 2n] each.

    `rows` [S] is each window's video (into `num_frames` [B]), `starts` [S]
    its first frame. Indices are clipped into the video; the mask marks the
    frames that really are in it.
    """
    offsets = tf.range(-context_frames, SEGMENT_FRAMES + context_frames)
    local = tf.cast(starts, tf.int32)[:, None] + offsets[None, :]
    length = tf.gather(num_frames, rows)[:, None]
    mask = (local >= 0) & (local < length)
    return tf.clip_by_value(local, 0, length - 1), mask


def gather_windows(per_frame, window_index, window_mask):
    """[B, T, H] per-frame values -> [B, S, W, H] windows, zero where masked."""
    batch_index = tf.broadcast_to(
        tf.range(tf.shape(per_frame)[0])[:, None, None], tf.shape(window_index))
    gathered = tf.gather_nd(per_frame,
                            tf.stack([batch_index, window_index], axis=-1))
    return gathered * tf.cast(window_mask, gathered.dtype)[..., None]


def _segment_ids(video_ids, rows, starts):
    return tf.strings.join([tf.gather(video_ids, rows),
                            tf.strings.as_string(starts)], separator=":")


def _window_examples(parsed, rows, starts, context_frames, per_video, extra):
    """Windows as flat examples, or regrouped by video (`per_video`)."""
    num_frames = parsed["num_frames"]
    index, mask = window_indices(num_frames, rows, starts, context_frames)
    segment_id = _segment_ids(parsed["id"], rows, tf.cast(starts, tf.int64))
    if not per_video:
        flat_index = (tf.gather(parsed["row_splits"], rows)[:, None]
                      + tf.cast(index, tf.int64))
        return {"frames": parsing.gather_frames(parsed, flat_index),
                "mask": mask, "segment_id": segment_id, **extra}
    num_videos = tf.shape(num_frames)[0]

    def by_video(values, default):
        return tf.RaggedTensor.from_value_rowids(
            values, rows, nrows=num_videos).to_tensor(default_value=default)

    flat_index, frame_mask = parsing.dense_frame_index(parsed)
    grouped = {key: by_video(value, tf.zeros([], value.dtype))
               for key, value in extra.items()}
    return {"frames": parsing.gather_frames(parsed, flat_index),
            "mask": frame_mask,
            "window_index": by_video(index, 0),
            "window_mask": by_video(mask, False),
            "segment_mask": by_video(tf.ones_like(rows, tf.bool), False),
            "segment_id": by_video(segment_id, ""), **grouped}


def _dequantized_unless(quantized, to_examples):
    """`to_examples`, its uint8 frames dequantized unless `quantized`."""
    if quantized:
        return to_examples

    def dequantized(*args):
        examples = to_examples(*args)
        return {**examples, **parsing.model_inputs(examples)}
    return dequantized


def _finish(dataset, to_examples, batch_size, per_video, shuffle, seed,
            quantized):
    dataset = dataset.map(_dequantized_unless(quantized, to_examples),
                          num_parallel_calls=tf.data.AUTOTUNE)
    if not per_video:
        if shuffle:
            dataset = dataset.unbatch().shuffle(16 * batch_size, seed=seed)
            dataset = dataset.batch(batch_size)
        else:
            # rebatch slices whole batches: no per-window element overhead.
            dataset = dataset.rebatch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _class_positions(segment_class_ids, vocabulary_size):
    """Dense map class id -> position among the segment classes, -1 elsewhere."""
    positions = [-1] * vocabulary_size
    for position, class_id in enumerate(segment_class_ids):
        positions[int(class_id)] = position
    return tf.constant(positions, tf.int32)


def rated_segment_dataset(pattern, feature_spec, segment_class_ids,
                          batch_size, negative_weight=1.0,
                          vocabulary_size=records.NUM_CLASSES, shuffle=False,
                          seed=None, repeat=False, context_frames=0,
                          per_video=False, files=None, compression="auto",
                          skip_corrupt_records=False, quantized=False):
    """Rated segments for fine-tuning, one example per distinct segment.

    Label and weight vectors run over the segment classes (in
    `segment_class_ids` order). A rated pair gets weight 1 and its score as
    label. Unrated pairs get weight 0, except the 2nd-place paper's weak
    negatives: classes outside the video's labels share `negative_weight`
    equally, label 0 (Loss = CE(B) + alpha * mean CE(A\\C, 0)).

    Yields `frames` [B, 5 + 2n, D], `mask` [B, 5 + 2n], `labels`, `weights`
    and `rated` (bool) [B, num_segment_classes], `segment_id` [B]
    ("<video id>:<start>"); with `per_video` see the module docstring (the
    per-segment tensors then gain a segment axis: [B, S, ...]).
    """
    files = files or list_files(pattern)
    num_classes = len(segment_class_ids)
    class_positions = _class_positions(segment_class_ids, vocabulary_size)
    parse_batch = batch_size if per_video else PARSE_BATCH

    def to_segments(batch_files, batch_records, serialized):
        parsed = parsing.parse_frame_batch(
            batch_files, batch_records, serialized, feature_spec,
            with_segments=True, num_classes=vocabulary_size)
        starts = parsed["segment_start_times"]
        pair_rows = tf.cast(starts.value_rowids(), tf.int64)
        # One example per distinct (video, start); pairs point at it.
        keys = pair_rows * (1 << 32) + starts.flat_values
        unique_keys, pair_segment = tf.unique(keys)
        rows = tf.cast(unique_keys // (1 << 32), tf.int32)
        segment_starts = unique_keys % (1 << 32)

        segment_labels = parsed["segment_labels"]
        positions = tf.gather(class_positions, segment_labels.flat_values)
        not_segment_class = parsing.any_per_record(positions < 0,
                                                   segment_labels.row_splits)
        checked = parsing.assert_records(
            [(tf.logical_not(not_segment_class), "a segment label is not a "
              "segment class")], parsed["file"], parsed["record"], parsed["id"])
        with tf.control_dependencies([checked]):
            pair_index = tf.stack([pair_segment, positions], axis=1)
        num_segments = tf.shape(unique_keys)[0]
        labels = tf.tensor_scatter_nd_max(
            tf.zeros([num_segments, num_classes]), pair_index,
            parsed["segment_scores"].flat_values)
        rated = tf.tensor_scatter_nd_update(
            tf.zeros([num_segments, num_classes], tf.bool), pair_index,
            tf.ones_like(positions, tf.bool))

        video_labels = parsed["labels"]
        outside = 1.0 - multi_hot(
            tf.gather(class_positions, video_labels.flat_values),
            video_labels.value_rowids(), tf.shape(parsed["id"])[0],
            num_classes)  # [B, C]
        weak_negative = outside * negative_weight / tf.maximum(
            tf.reduce_sum(outside, axis=1, keepdims=True), 1.0)
        weights = tf.tensor_scatter_nd_update(
            tf.gather(weak_negative, rows), pair_index,
            tf.ones_like(positions, tf.float32))
        return _window_examples(
            parsed, rows, segment_starts, context_frames, per_video,
            {"labels": labels, "weights": weights, "rated": rated})

    dataset = _serialized(files, parse_batch, shuffle, seed, repeat,
                          compression, skip_corrupt_records)
    return _finish(dataset, to_segments, batch_size, per_video, shuffle, seed,
                   quantized)


def test_segment_dataset(pattern, feature_spec, batch_size, context_frames=0,
                         per_video=False, files=None, compression="auto",
                         skip_corrupt_records=False, quantized=False):
    """Every 5-frame window of every video, from frame 0, in file order.

    The partial last window is zero-padded and masked, as the starter code
    pads it. Yields `frames` [B, 5 + 2n, D], `mask` [B, 5 + 2n],
    `segment_id` [B]; with `per_video` see the module docstring.
    """
    files = files or list_files(pattern)

    def to_windows(batch_files, batch_records, serialized):
        parsed = parsing.parse_frame_batch(batch_files, batch_records,
                                           serialized, feature_spec)
        num_windows = (parsed["num_frames"] + SEGMENT_FRAMES - 1) // SEGMENT_FRAMES
        rows = tf.repeat(tf.range(tf.shape(num_windows)[0]), num_windows)
        first_window = tf.cumsum(num_windows, exclusive=True)
        starts = (tf.range(tf.reduce_sum(num_windows))
                  - tf.gather(first_window, rows)) * SEGMENT_FRAMES
        return _window_examples(parsed, rows, starts, context_frames,
                                per_video, {})

    dataset = _serialized(files, batch_size if per_video else PARSE_BATCH,
                          False, None, False, compression, skip_corrupt_records)
    return _finish(dataset, to_windows, batch_size, per_video, False, None,
                   quantized)
