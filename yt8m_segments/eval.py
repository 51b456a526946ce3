"""Scores segment rankings with the challenge metric, MAP@K (SPEC section 4).

Submission mode:
  python -m yt8m_segments.eval --submission_file=S --ground_truth_file=G \
      --segment_max_pred=K [--per_class_file=P]
Model mode, on the rated segments of validate records:
  python -m yt8m_segments.eval --eval_data_pattern='validate-*.tfrecord' \
      --train_dir=F --segment_max_pred=K
The last line of stdout is `MAP@K <value>`, so scripts can parse it.
"""

from absl import app
from absl import flags
from absl import logging

import numpy as np

from yt8m_segments import flag_defs
from yt8m_segments import metrics
from yt8m_segments import predict
from yt8m_segments import run_artifacts
from yt8m_segments import submission
from yt8m_segments.data import views
from yt8m_segments.atomic import atomic_open

FLAGS = flags.FLAGS

flags.DEFINE_string("submission_file", None,
                    "Submission CSV (header Class,Segments) to score.")
flags.DEFINE_string("ground_truth_file", None,
                    "Rated pairs CSV (header segment_id,class,score).")
flags.DEFINE_string("per_class_file", None,
                    "Optional CSV class,ap,num_positives to write.")
flags.DEFINE_string("eval_data_pattern", None,
                    "Validate records to score a model on (model mode).")


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


def ground_truth_from_ratings(segment_ids, labels, rated, class_ids):
    """{class: {segment id: score}} for the rated entries of [N, C] arrays."""
    ground_truth = {}
    for column, class_id in enumerate(class_ids):
        rows = np.flatnonzero(rated[:, column])
        if rows.size:
            ground_truth[int(class_id)] = dict(zip(
                segment_ids[rows].tolist(), labels[rows, column].tolist()))
    return ground_truth


def evaluate_model(eval_data_pattern, train_dir, k, batch_size=64,
                   segment_labels_file=None, num_classes=3862, files=None,
                   context_frames=None, input_options=None):
    """MAP@k of the model in `train_dir` on the rated segments of the records.

    Every rated segment is ranked per class, then scored as a submission would
    be: unrated pairs are removed after truncation to k.
    """
    run = run_artifacts.Run(train_dir)
    files = files or views.list_files(eval_data_pattern)
    class_ids = run.segment_class_ids(segment_labels_file, ",".join(files))
    dataset = views.rated_segment_dataset(
        eval_data_pattern, run.feature_spec, class_ids, batch_size,
        vocabulary_size=num_classes, files=files,
        context_frames=run.context_frames(context_frames),
        **(input_options or {}))
    segment_ids, probabilities, ratings = predict.predict_segments(
        run.model, dataset, files, run.columns_for(class_ids),
        extra_keys=("labels", "rated"))
    ground_truth = ground_truth_from_ratings(
        segment_ids, ratings["labels"], ratings["rated"], class_ids)
    ranked = metrics.ranked_from_scores(segment_ids, probabilities, class_ids, k)
    return metrics.segment_map_at_k(ranked, ground_truth, k)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    k = FLAGS.segment_max_pred
    if FLAGS.eval_data_pattern or FLAGS.train_dir:
        if not (FLAGS.eval_data_pattern and FLAGS.train_dir):
            raise app.UsageError(
                "model mode needs both --eval_data_pattern and --train_dir")
        value = evaluate_model(
            FLAGS.eval_data_pattern, FLAGS.train_dir, k, FLAGS.batch_size,
            FLAGS.segment_labels_file, FLAGS.num_classes,
            files=flag_defs.data_files(FLAGS.eval_data_pattern, holdout=True),
            context_frames=flag_defs.context_frames_override(),
            input_options=flag_defs.input_options())
    elif FLAGS.submission_file and FLAGS.ground_truth_file:
        value = evaluate_submission(FLAGS.submission_file, FLAGS.ground_truth_file,
                                    k, FLAGS.per_class_file)
    else:
        raise app.UsageError("give --submission_file and --ground_truth_file, "
                             "or --eval_data_pattern and --train_dir")
    print(f"MAP@{k} {value:.6f}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
