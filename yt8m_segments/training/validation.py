"""A model's score on validation records: MAP@K on rated segments, as the
challenge scores a submission, or GAP@k of its video-level predictions."""

import numpy as np
import tensorflow as tf

from yt8m_segments.evaluation import metrics
from yt8m_segments.prediction import predict
from yt8m_segments.data import parsing
from yt8m_segments.data import reader
from yt8m_segments.data import views


def ground_truth_from_ratings(segment_ids, labels, rated, class_ids):
    """{class: {segment id: score}} for the rated entries of [N, C] arrays."""
    ground_truth = {}
    for column, class_id in enumerate(class_ids):
        rows = np.flatnonzero(rated[:, column])
        if rows.size:
            ground_truth[int(class_id)] = dict(zip(
                segment_ids[rows].tolist(), labels[rows, column].tolist()))
    return ground_truth


def rated_segment_map(model, dataset, files, class_ids, columns, k,
                      mean_frame=False, jit_compile=False):
    """MAP@k of `model` over a rated-segment dataset (views.rated_segment_dataset).

    `columns` picks the model outputs of `class_ids`. Every rated segment is
    ranked per class, then unrated pairs are removed after truncation to k.
    `mean_frame`: feed the model each window's mean frame (a run trained on
    video-level records). `jit_compile`: the forward pass compiled by XLA.
    """
    column_index = tf.constant(columns, tf.int32)

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def forward(frames, mask):
        probabilities = model({"frames": frames, "mask": mask}, training=False)
        return tf.gather(probabilities, column_index, axis=1)

    ids, scores, labels, rated = [], [], [], []
    for batch in reader.iterate(dataset, files):
        inputs = parsing.model_inputs(batch)
        if mean_frame:
            inputs = parsing.mean_frame(inputs)
        scores.append(forward(inputs["frames"], inputs["mask"]).numpy())
        ids.append(batch["segment_id"].numpy())
        labels.append(batch["labels"].numpy())
        rated.append(batch["rated"].numpy())
    if not ids:
        raise ValueError("no rated segment to validate on in "
                         f"{reader.describe_files(files)}")
    segment_ids = np.concatenate(ids).astype(str)
    reader.check_unique_segments(segment_ids, files)
    ground_truth = ground_truth_from_ratings(
        segment_ids, np.concatenate(labels), np.concatenate(rated), class_ids)
    ranked = metrics.ranked_from_scores(segment_ids, np.concatenate(scores),
                                        class_ids, k)
    return metrics.segment_map_at_k(ranked, ground_truth, k)


def video_gap(model, dataset, files, class_ids, k=20, mean_frame=False,
              jit_compile=False):
    """GAP@k of `model` (outputs over `class_ids`) over a whole-video dataset.

    `dataset`: `views.video_dataset` or `video_level_dataset` (labels over
    the vocabulary). Streamed: only each video's top-k predictions are kept.
    Every video label counts as a positive, also one outside `class_ids`.
    `mean_frame`: feed the model each video's mean frame.
    """
    columns = np.asarray(class_ids)
    gap = metrics.GapAccumulator(k)
    num_positives = 0
    predictor = predict.Predictor(model, id_key="id", mean_frame=mean_frame,
                                  jit_compile=jit_compile)
    for _, probabilities, extras in predictor.batches(dataset, files,
                                                      ("labels",)):
        labels = extras["labels"]
        num_positives += int(np.count_nonzero(labels))
        gap.add(probabilities, labels[:, columns])
    if not gap.scores:
        raise ValueError(f"no video to validate on in {list(files)}")
    return gap.result(num_positives)


def whole_video_dataset(files, feature_spec, num_classes, batch_size,
                        max_frames=300, frame_features=True,
                        input_options=None):
    """The videos of `files` whole, for `video_gap`: frame records (first
    `max_frames` frames, quantized) or 2018 video-level records
    (`frame_features=False`: the `mean_<name>` features of `feature_spec`)."""
    if frame_features:
        return views.video_dataset(None, feature_spec, num_classes,
                                   max_frames, batch_size, files=files,
                                   quantized=True, **(input_options or {}))
    return views.video_level_dataset(None, feature_spec.video_level(),
                                     num_classes, batch_size, files=files,
                                     **(input_options or {}))
