r"""Scores segment rankings with the challenge metric, MAP@K (docs/metric.md).

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


from yt8m_segments import cli
from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.evaluation import evaluate
from yt8m_segments import flag_defs
from yt8m_segments.postprocess import refine
from yt8m_segments.postprocess import refine_choice

flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS

flags.DEFINE_string("submission_file", None,
                    "Submission CSV (header Class,Segments) to score.")
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
                  "<parameters> MAP@K <value> halves_won <share>`, then the "
                  "chosen one as `chosen ...` (the best that beats none on "
                  "95% of random halves of the videos, else none). Warns when "
                  "the video model looks uninformative.")


def main_cache(k):
    """--cache_dir and/or --video_cache: print GAP then MAP lines."""
    video_labels, ground_truth = None, None
    if FLAGS.video_cache:
        if not FLAGS.eval_data_pattern:
            raise app.UsageError("--video_cache needs --eval_data_pattern (the "
                                 "video labels)")
        video_labels, ground_truth = evaluate.read_record_labels(
            flag_defs.data_files(FLAGS.eval_data_pattern, holdout=True),
            FLAGS.compression)
        gap = evaluate.evaluate_video_cache(FLAGS.video_cache, video_labels, FLAGS.gap_k)
        print(f"GAP@{FLAGS.gap_k} {gap:.6f}")
    if not FLAGS.cache_dir:
        return
    if FLAGS.ground_truth_file or ground_truth is None:
        _, ground_truth = flag_defs.labels_from_flags()
    if FLAGS.choose_refinement:
        table, best = refine_choice.choose(
            cache_lib.ProbabilityCache.open(FLAGS.cache_dir), ground_truth, k)
        print("\n".join(refine_choice.table_lines(table, k, best)))
        return
    refine_options = refine.options_from_flags(FLAGS)
    value, per_class = evaluate.evaluate_cache(FLAGS.cache_dir, ground_truth, k,
                                      FLAGS.per_class_file, refine_options)
    if FLAGS.report_file:
        from yt8m_segments.evaluation import report  # pylint: disable=import-outside-toplevel
        curve = evaluate.map_against_topk(FLAGS.cache_dir, ground_truth, k)
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
            value = evaluate.evaluate_model_gap(
                FLAGS.train_dir,
                flag_defs.data_files(FLAGS.eval_data_pattern, holdout=True),
                FLAGS.gap_k, FLAGS.batch_size, FLAGS.num_classes,
                FLAGS.max_frames, FLAGS.frame_features,
                flag_defs.input_options(), FLAGS.mixed_precision,
                FLAGS.jit_compile)
            print(f"GAP@{FLAGS.gap_k} {value:.6f}")
            return
        value = evaluate.evaluate_model(
            FLAGS.eval_data_pattern, FLAGS.train_dir, k, FLAGS.batch_size,
            FLAGS.segment_labels_file, FLAGS.num_classes,
            files=flag_defs.data_files(FLAGS.eval_data_pattern, holdout=True),
            context_frames=flag_defs.context_frames_override(),
            input_options=flag_defs.input_options(),
            mixed_precision=FLAGS.mixed_precision,
            jit_compile=FLAGS.jit_compile)
    elif FLAGS.submission_file and FLAGS.ground_truth_file:
        value = evaluate.evaluate_submission(FLAGS.submission_file, FLAGS.ground_truth_file,
                                    k, FLAGS.per_class_file)
    else:
        raise app.UsageError("give --submission_file and --ground_truth_file, "
                             "or --eval_data_pattern and --train_dir")
    print(f"MAP@{k} {value:.6f}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
