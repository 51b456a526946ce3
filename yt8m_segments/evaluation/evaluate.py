"""What eval.py computes, as a library: MAP@K of a submission, a model, or a
probability cache (refined or not) against rated pairs, GAP@k of a model or
a cache's video probabilities against video labels, and the rated pairs and
video labels of records (`read_record_labels`)."""

from absl import logging

import numpy as np
import tensorflow as tf

from yt8m_segments import precision
from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.evaluation import metrics
from yt8m_segments.postprocess import refine
from yt8m_segments.training import run_artifacts
from yt8m_segments.postprocess import submission
from yt8m_segments.training import validation
from yt8m_segments.atomic import atomic_open
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views

VIDEO_TOPK_VALUES = (1, 2, 5, 10, 20, 50)


def write_per_class(path, per_class, positives):
    """CSV class,ap,num_positives for the classes that count in the mean."""
    with atomic_open(path) as handle:
        handle.write("class,ap,num_positives\n")
        handle.write("".join(f"{class_id},{per_class[class_id]:.6f},"
                             f"{positives[class_id]}\n"
                             for class_id in sorted(per_class)))


def evaluate_submission(submission_file, ground_truth_file, k,
                        per_class_file=None):
    """MAP@k of a submission CSV against a ground-truth CSV."""
    ranked = submission.read_submission(submission_file)
    ground_truth = submission.read_ground_truth(ground_truth_file)
    per_class = metrics.segment_ap_per_class(ranked, ground_truth, k)
    logging.info("%d classes in the submission, %d with positive ratings",
                 len(ranked), len(per_class))
    if per_class_file:
        write_per_class(per_class_file, per_class,
                        metrics.num_positives(ground_truth))
    return metrics.mean_ap(per_class)


def evaluate_model(eval_data_pattern, train_dir, k, batch_size=64,
                   segment_labels_file=None, num_classes=records.NUM_CLASSES, files=None,
                   context_frames=None, input_options=None,
                   mixed_precision=precision.FLOAT32, jit_compile=False):
    """MAP@k of the model in `train_dir` on the rated segments of the records.

    Every rated segment is ranked per class, then scored as a submission would
    be: unrated pairs are removed after truncation to k. The model runs under
    `mixed_precision` (precision.py), compiled by XLA with `jit_compile`.
    """
    run = run_artifacts.Run(train_dir)
    files = files or views.list_files(eval_data_pattern)
    class_ids = run.segment_class_ids(segment_labels_file, ",".join(files),
                                      **(input_options or {}))
    dataset = views.rated_segment_dataset(
        eval_data_pattern, run.feature_spec, class_ids, batch_size,
        vocabulary_size=num_classes, files=files,
        context_frames=run.context_frames(context_frames),
        quantized=True, **(input_options or {}))
    return validation.rated_segment_map(run.model_in(mixed_precision), dataset,
                                        files, class_ids,
                                        run.columns_for(class_ids), k,
                                        mean_frame=run.reads_mean_frame,
                                        jit_compile=jit_compile)


def evaluate_model_gap(train_dir, files, k=20, batch_size=64,
                       num_classes=records.NUM_CLASSES, max_frames=records.MAX_FRAMES, frame_features=True,
                       input_options=None, mixed_precision=precision.FLOAT32,
                       jit_compile=False):
    """GAP@k of the model in `train_dir` over whole videos of `files`.

    Frame records (first `max_frames` frames), or 2018 video-level records
    (`frame_features=False`, features `mean_<name>`). Streamed: only each
    video's top-k predictions are kept. Every video label counts as a
    positive, also one outside the model's classes. `mixed_precision`,
    `jit_compile`: as evaluate_model's.
    """
    run = run_artifacts.Run(train_dir)
    dataset = validation.whole_video_dataset(
        files, run.feature_spec, num_classes, batch_size, max_frames,
        frame_features, input_options)
    return validation.video_gap(run.model_in(mixed_precision), dataset, files,
                                run.class_ids, k,
                                mean_frame=run.reads_mean_frame,
                                jit_compile=jit_compile)


def read_record_labels(files, compression="auto", batch_size=256):
    """Video labels and rated pairs of records, parsing their context only.

    Returns ({video id: [label ids]}, {class: {segment id: score}}) where the
    segment ids are `<video id>:<start>`; a pair rated twice keeps the first.
    """
    context = {
        "id": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "labels": tf.io.RaggedFeature(tf.int64),
        "segment_start_times": tf.io.RaggedFeature(tf.int64),
        "segment_labels": tf.io.RaggedFeature(tf.int64),
        "segment_scores": tf.io.RaggedFeature(tf.float32),
    }

    def parse(_, __, serialized):
        parsed, _, _ = tf.io.parse_sequence_example(serialized,
                                                    context_features=context)
        return parsed

    dataset = reader.record_dataset(files, compression=compression).batch(
        batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    video_labels, ground_truth = {}, {}
    for batch in reader.iterate(dataset, files, compression):
        ids = batch["id"].numpy().astype(str)
        labels = batch["labels"].to_list()
        starts = batch["segment_start_times"].to_list()
        classes = batch["segment_labels"].to_list()
        scores = batch["segment_scores"].to_list()
        for i, video_id in enumerate(ids):
            video_labels[video_id] = [int(c) for c in labels[i]]
            for start, class_id, score in zip(starts[i], classes[i], scores[i]):
                ground_truth.setdefault(int(class_id), {}).setdefault(
                    f"{video_id}:{start}", float(score))
    return video_labels, ground_truth


def evaluate_cache(cache_dir, ground_truth, k, per_class_file=None,
                   refine_options=None):
    """(MAP@k, per-class AP dict) of a cache's segment probabilities,
    refined first with `refine_options` (refine.RefineOptions) if given."""
    cache = cache_lib.ProbabilityCache.open(cache_dir)
    ranked = refine.ranked_from_cache(cache, k, refine_options)
    known = set(cache.segment_ids.tolist())
    rated = {s for ratings in ground_truth.values() for s in ratings}
    missing = len(rated - known)
    if missing:
        logging.warning("%d of %d rated segments are not in the cache %s",
                        missing, len(rated), cache_dir)
    per_class = metrics.segment_ap_per_class(ranked, ground_truth, k)
    if per_class_file:
        write_per_class(per_class_file, per_class,
                        metrics.num_positives(ground_truth))
    return metrics.mean_ap(per_class), per_class


def evaluate_video_cache(cache_dir, video_labels, k=20):
    """GAP@k of a cache's video probabilities against `video_labels`.

    Scored over the cache's videos that `video_labels` knows; every label of
    those videos counts as a positive, also one outside the cache's classes.
    """
    cache = cache_lib.ProbabilityCache.open(cache_dir)
    if not cache.has_videos():
        raise ValueError(f"{cache_dir} holds no video-level probabilities "
                         "(write it with --video_train_dir)")
    rows = [row for row, video in enumerate(cache.video_ids.tolist())
            if video in video_labels]
    if not rows:
        raise ValueError(f"no video of {cache_dir} is in the labelled records")
    if len(rows) < len(cache.video_ids):
        logging.warning("%d of %d videos of %s have no labels; left out",
                        len(cache.video_ids) - len(rows), len(cache.video_ids),
                        cache_dir)
    column = {c: i for i, c in enumerate(cache.video_class_ids)}
    labels = np.zeros((len(rows), len(column)), dtype=bool)
    num_positives = 0
    for i, row in enumerate(rows):
        video_classes = set(video_labels[str(cache.video_ids[row])])
        num_positives += len(video_classes)
        labels[i, [column[c] for c in video_classes if c in column]] = True
    predictions = cache.video_probs[np.asarray(rows)]
    return metrics.gap_at_k(predictions, labels, k, num_positives=num_positives)


def map_against_topk(cache_dir, ground_truth, k, topk_values=VIDEO_TOPK_VALUES):
    """[(topk, MAP@k)] under --refine=topk, or None without video probabilities."""
    cache = cache_lib.ProbabilityCache.open(cache_dir)
    if not cache.has_videos():
        return None
    return [(topk, metrics.segment_map_at_k(
        refine.ranked_from_cache(cache, k, refine.RefineOptions("topk", topk=topk)),
        ground_truth, k)) for topk in topk_values]
