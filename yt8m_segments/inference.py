r"""Score every 5-frame segment of the test videos: a probability cache and/or
a submission.

  python -m yt8m_segments.inference --train_dir=F \
      --input_data_pattern='test-*.tfrecord' --output_file=submission.csv \
      --segment_max_pred=100000 \
      [--cache_dir=D] [--video_train_dir=P --refine=topk]

A fine-tuned run knows its segment classes. A model over the whole vocabulary
(a pretrained run used without fine-tuning) is restricted to the classes of
--segment_labels_file.

Caches (yt8m_segments/postprocess/cache.py). With --cache_dir=D each input file's
predictions land in D/parts/<file basename>.npz (atomic); a rerun skips the
files whose part exists (written by the same model), then the parts are
assembled into the cache in D. --video_train_dir adds whole-video
probabilities of that run (all its classes, up to --max_frames frames
per video). Without --cache_dir the cache goes to a temporary directory; the
submission is always selected from the cache, so CSV and cache agree.

Splitting across machines: --num_shards=S --shard_index=i processes files
i, i+S, ... into its own --cache_dir; then
  python -m yt8m_segments.inference --merge_caches=D0,D1,... --cache_dir=OUT \
      [--output_file=submission.csv --segment_max_pred=K --refine=...]
merges them (and can write the submission from the merged cache).

A submission from an existing cache, without running a model:
  python -m yt8m_segments.inference --from_cache=D --output_file=... --refine=...

Choosing the refinement: --refine=auto scores the grid of
refine_choice.py on a cache of held-out rated videos (--refine_cache_dir,
written by this command over validate records with the same
--video_train_dir) against their rated pairs (--eval_data_pattern or
--ground_truth_file), logs the table, and refines the submission with the
best (none unless a refinement beats it):
  python -m yt8m_segments.inference --train_dir=F --video_train_dir=P \
      --input_data_pattern='validate-*' --cache_dir=VAL
  python -m yt8m_segments.inference --train_dir=F --video_train_dir=P \
      --input_data_pattern='test-*' --output_file=submission.csv \
      --refine=auto --refine_cache_dir=VAL --eval_data_pattern='validate-*'
Any refinement first checks the video model: a WARNING when its top classes
are the same on almost every video (refine_choice.top_class_concentration).

Per-frame work once per video: with context frames (n > 0) and a model whose
aggregators split into per-frame features and pooling (every orderless one;
models/windowed.py), the test view keeps each video whole (`per_video=True`),
the per-frame part of the model (L2 norm, input batch norm, projections,
soft assignments, attention) runs once per video and each window pools the
gathered per-frame features; the cache rows are those of the flat windows
(same ids, same order, probabilities equal up to float rounding). Recurrent
models, and n = 0 (windows do not overlap), keep the flat [B, 5 + 2n, D]
windows; the log says which path runs.
"""

from absl import app
from absl import flags
from absl import logging

from yt8m_segments import cli
from yt8m_segments.postprocess import cache
from yt8m_segments import flag_defs
from yt8m_segments.postprocess import refine
from yt8m_segments.postprocess import refine_choice
from yt8m_segments.prediction import cache_builder

flags.DEFINE_string("output_file", None, "Where to write the submission CSV.")
flags.DEFINE_integer("shard_index", 0, "The shard this job processes.")
flags.DEFINE_list("merge_caches", None,
                  "Comma-separated shard caches to merge into --cache_dir "
                  "(no model is run).")
flags.DEFINE_string("from_cache", None,
                    "Write --output_file from this existing cache (no model "
                    "is run).")
flags.DEFINE_string("refine_cache_dir", None,
                    "--refine=auto: a probability cache of held-out rated "
                    "videos with video probabilities (this command over "
                    "validate records, same models, with --cache_dir); the "
                    "refinement is chosen on it against the rated pairs of "
                    "--eval_data_pattern or --ground_truth_file, by MAP@K at "
                    "the K reaching as deep into it as --segment_max_pred "
                    "into the test set.")
# Frames per video read for the video-level probabilities: --max_frames.
flags.DEFINE_alias("video_max_frames", "max_frames")
flags.DEFINE_integer("log_every_n_batches", 50,
                     "Progress line every this many batches.")

flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS


def _held_out():
    """--refine=auto's (held-out cache, rated pairs), checked before any work."""
    if not FLAGS.refine_cache_dir:
        raise app.UsageError("--refine=auto needs --refine_cache_dir (a cache "
                             "of held-out rated videos)")
    held_out = cache.ProbabilityCache.open(FLAGS.refine_cache_dir)
    if not held_out.has_videos():
        raise app.UsageError(f"--refine_cache_dir={FLAGS.refine_cache_dir} has "
                             "no video probabilities: write it with "
                             "--video_train_dir")
    return held_out, flag_defs.labels_from_flags("--refine=auto is chosen")[1]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    refine_options = flag_defs.refine_options()
    held_out = None
    if refine_options.mode == refine_choice.AUTO:
        held_out = _held_out()
    else:
        refine.parse_modes(refine_options.mode)  # a bad --refine fails before work
    if FLAGS.merge_caches or FLAGS.from_cache:
        if FLAGS.merge_caches and FLAGS.from_cache:
            raise app.UsageError("use either --merge_caches or --from_cache")
        if FLAGS.merge_caches:
            if not FLAGS.cache_dir:
                raise app.UsageError("--merge_caches needs --cache_dir (the output)")
            cache.merge_caches(FLAGS.merge_caches, FLAGS.cache_dir)
            opened = cache.ProbabilityCache.open(FLAGS.cache_dir)
            logging.info("merged %d caches: %d segments", len(FLAGS.merge_caches),
                         opened.shape[0])
        else:
            if not FLAGS.output_file:
                raise app.UsageError("--from_cache needs --output_file")
            opened = cache.ProbabilityCache.open(FLAGS.from_cache)
        if FLAGS.output_file:
            cache_builder.write_from_cache(opened, FLAGS.output_file,
                                           FLAGS.segment_max_pred,
                                           refine_options, held_out)
        return
    for name in ("train_dir", "input_data_pattern"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    if not (FLAGS.output_file or FLAGS.cache_dir):
        raise app.UsageError("give --output_file, --cache_dir or both")
    if ((held_out or refine_options.active) and not FLAGS.video_train_dir
            and FLAGS.output_file):
        raise app.UsageError(f"--refine={refine_options.mode} needs "
                             "--video_train_dir (video-level probabilities)")
    cache_builder.infer(
        FLAGS.train_dir, FLAGS.input_data_pattern, FLAGS.output_file,
        FLAGS.segment_max_pred, FLAGS.batch_size, FLAGS.segment_labels_file,
        flag_defs.context_frames_override(), flag_defs.input_options(),
        FLAGS.cache_dir, FLAGS.video_train_dir, FLAGS.num_shards,
        FLAGS.shard_index, refine_options, FLAGS.max_frames,
        FLAGS.num_classes, FLAGS.log_every_n_batches, held_out,
        FLAGS.mixed_precision, FLAGS.jit_compile)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
