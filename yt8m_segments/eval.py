"""Scores segment rankings with the challenge metric, MAP@K (SPEC section 4).

Submission mode:
  python -m yt8m_segments.eval --submission_file=S --ground_truth_file=G \
      --segment_max_pred=K [--per_class_file=P]
Model mode, on the rated segments of validate records:
  python -m yt8m_segments.eval --eval_data_pattern='validate-*.tfrecord' \
      --train_dir=F --segment_max_pred=K
or, with --eval_metric=gap, GAP@--gap_k of the model's video-level
predictions over whole videos (first --max_frames frames) against their
video labels, as the 2018 challenge scored (the papers' base-model tables);
--frame_features=false reads 2018 video-level records instead:
  python -m yt8m_segments.eval --eval_metric=gap --train_dir=P \
      --eval_data_pattern='validate-*.tfrecord'
Cache mode, on a probability cache (inference's, an ensemble's, a stacker's);
the rated pairs come from a ground-truth CSV or from validate records:
  python -m yt8m_segments.eval --cache_dir=D --ground_truth_file=G \
      --segment_max_pred=K [--per_class_file=P] [--report_file=R.png]
  python -m yt8m_segments.eval --cache_dir=D --eval_data_pattern='validate-*'
Video level, GAP@20 of a cache's video probabilities against the records'
video labels (printed before the MAP line when both are asked for):
  python -m yt8m_segments.eval --video_cache=D --eval_data_pattern='validate-*'
`--refine=...` (flags of refine.py) scores the cache as refined: pairs the
refinement drops leave the class lists. `--choose_refinement` scores a
grid of refinements instead and prints the table and the one chosen
(refine_choice.py: the best that beats none on 95% of random halves of the
videos, else none):
  python -m yt8m_segments.eval --cache_dir=D --eval_data_pattern='validate-*' \
      --segment_max_pred=K --choose_refinement
`--report_file=R.png` (extra `plots`: matplotlib) draws the per-class AP
histogram and, when the cache has video probabilities, MAP@K against the
top-k refinement's k (see report.py).
The last line of stdout is `MAP@K <value>` (`GAP@20 <value>` when only a
video cache or a model's GAP is scored; `chosen <mode> <parameters> MAP@K
<value> halves_won <share>` with --choose_refinement), so scripts can parse it.
"""

from absl import app
from absl import flags
from absl import logging

import numpy as np
import tensorflow as tf

from yt8m_segments import cli
from yt8m_segments import cache as cache_lib
from yt8m_segments import flag_defs
from yt8m_segments import metrics
from yt8m_segments import refine
from yt8m_segments import refine_choice
from yt8m_segments import run_artifacts
from yt8m_segments import validation
from yt8m_segments import submission
from yt8m_segments.data import reader
from yt8m_segments.data import views
from yt8m_segments.atomic import atomic_open

flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS

flags.DEFINE_string("submission_file", None,
                    "Submission CSV (header Class,Segments) to score.")
flags.DEFINE_string("ground_truth_file", None,
                    "Rated pairs CSV (header segment_id,class,score).")
flags.DEFINE_string("per_class_file", None,
                    "Optional CSV class,ap,num_positives to write.")


flags.DEFINE_string("video_cache", None,
                    "Probability cache whose video probabilities to score by "
                    "GAP@--gap_k against the video labels of "
                    "--eval_data_pattern.")
flags.DEFINE_string("report_file", None,
                    "PNG report of a cache's evaluation (needs matplotlib).")
flags.DEFINE_bool("choose_refinement", False,
                  "Score the refinement grid of refine_choice.py on --cache_dir "
                  "(held-out rated videos with video probabilities) and print "
                  "one line per candidate, best first, `candidate <mode> "
                  "<parameters> MAP@K <value>`, then the best as `chosen ...` "
                  "(ties go to none). Warns when the video model looks "
                  "uninformative.")


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
        quantized=True, **(input_options or {}))
    return validation.rated_segment_map(run.model, dataset, files, class_ids,
                                        run.columns_for(class_ids), k,
                                        mean_frame=run.reads_mean_frame)


def evaluate_model_gap(train_dir, files, k=20, batch_size=64,
                       num_classes=3862, max_frames=300, frame_features=True,
                       input_options=None):
    """GAP@k of the model in `train_dir` over whole videos of `files`.

    Frame records (first `max_frames` frames), or 2018 video-level records
    (`frame_features=False`, features `mean_<name>`). Streamed: only each
    video's top-k predictions are kept. Every video label counts as a
    positive, also one outside the model's classes.
    """
    run = run_artifacts.Run(train_dir)
    dataset = validation.whole_video_dataset(
        files, run.feature_spec, num_classes, batch_size, max_frames,
        frame_features, input_options)
    return validation.video_gap(run.model, dataset, files, run.class_ids, k,
                                mean_frame=run.reads_mean_frame)


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


def labels_from_flags():
    """(video labels or None, rated pairs) from --ground_truth_file, else the
    records of --eval_data_pattern."""
    if FLAGS.ground_truth_file:
        return None, submission.read_ground_truth(FLAGS.ground_truth_file)
    if not FLAGS.eval_data_pattern:
        raise app.UsageError("a cache is scored against --ground_truth_file or "
                             "the rated pairs of --eval_data_pattern")
    files = flag_defs.data_files(FLAGS.eval_data_pattern, holdout=True)
    return read_record_labels(files, FLAGS.compression)


def main_cache(k):
    """--cache_dir and/or --video_cache: print GAP then MAP lines."""
    video_labels, ground_truth = None, None
    if FLAGS.video_cache:
        if not FLAGS.eval_data_pattern:
            raise app.UsageError("--video_cache needs --eval_data_pattern (the "
                                 "video labels)")
        video_labels, ground_truth = read_record_labels(
            flag_defs.data_files(FLAGS.eval_data_pattern, holdout=True),
            FLAGS.compression)
        gap = evaluate_video_cache(FLAGS.video_cache, video_labels, FLAGS.gap_k)
        print(f"GAP@{FLAGS.gap_k} {gap:.6f}")
    if not FLAGS.cache_dir:
        return
    if FLAGS.ground_truth_file or ground_truth is None:
        _, ground_truth = labels_from_flags()
    if FLAGS.choose_refinement:
        table, best = refine_choice.choose(
            cache_lib.ProbabilityCache.open(FLAGS.cache_dir), ground_truth, k)
        print("\n".join(refine_choice.table_lines(table, k, best)))
        return
    refine_options = refine.options_from_flags(FLAGS)
    value, per_class = evaluate_cache(FLAGS.cache_dir, ground_truth, k,
                                      FLAGS.per_class_file, refine_options)
    if FLAGS.report_file:
        from yt8m_segments import report  # pylint: disable=import-outside-toplevel
        curve = map_against_topk(FLAGS.cache_dir, ground_truth, k)
        report.write_report(FLAGS.report_file, per_class, k, curve,
                            title=FLAGS.cache_dir)
    print(f"MAP@{k} {value:.6f}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    k = FLAGS.segment_max_pred
    if FLAGS.report_file and not FLAGS.cache_dir:
        raise app.UsageError("--report_file reports on a --cache_dir")
    if FLAGS.refine == refine_choice.AUTO:
        raise app.UsageError("eval chooses the refinement with "
                             "--choose_refinement; --refine=auto is inference's")
    if FLAGS.choose_refinement:
        if not FLAGS.cache_dir:
            raise app.UsageError("--choose_refinement scores a --cache_dir")
        if (refine.parse_modes(FLAGS.refine) or FLAGS.video_cache
                or FLAGS.per_class_file or FLAGS.report_file):
            raise app.UsageError("--choose_refinement tries every refinement: "
                                 "no --refine, --video_cache, --per_class_file "
                                 "or --report_file with it")
    if FLAGS.cache_dir or FLAGS.video_cache:
        if FLAGS.train_dir or FLAGS.submission_file:
            raise app.UsageError("give a cache, a submission or a model, not "
                                 "several")
        main_cache(k)
        return
    if FLAGS.eval_data_pattern or FLAGS.train_dir:
        if not (FLAGS.eval_data_pattern and FLAGS.train_dir):
            raise app.UsageError(
                "model mode needs both --eval_data_pattern and --train_dir")
        if FLAGS.eval_metric == "gap":
            value = evaluate_model_gap(
                FLAGS.train_dir,
                flag_defs.data_files(FLAGS.eval_data_pattern, holdout=True),
                FLAGS.gap_k, FLAGS.batch_size, FLAGS.num_classes,
                FLAGS.max_frames, FLAGS.frame_features,
                flag_defs.input_options())
            print(f"GAP@{FLAGS.gap_k} {value:.6f}")
            return
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
    cli.run(main)


if __name__ == "__main__":
    run()
