"""Flags shared by several commands, defined once (absl forbids redefinition).

Names follow the YouTube-8M starter code where it has one. A command that
reads a few of them declares them key flags (so its --help lists them) by
their holders: flags.declare_key_flag(flag_defs.CACHES).
"""

from absl import flags

from yt8m_segments import precision
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import synthetic
from yt8m_segments.data.features import FeatureSpec

flags.DEFINE_string("train_dir", None,
                    "Directory of a training run: written by train.py, read "
                    "by inference.py, eval.py and export.")
flags.DEFINE_integer("batch_size", 64, "Examples per batch.")
flags.DEFINE_string("eval_data_pattern", None,
                    "Validate records with rated segments (or, with "
                    "--eval_metric=gap, any records with video labels): "
                    "eval.py scores a model (or a cache's rated pairs and "
                    "video labels) on them; train.py validates on them every "
                    "--eval_every_steps (with --num_folds > 1 the held-out "
                    "fold is used instead).")
flags.DEFINE_string("feature_names", ",".join(records.DEFAULT_FEATURE_NAMES),
                    "Comma-separated per-frame features to read.")
MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision", precision.FLOAT32, list(precision.POLICIES),
    "Precision of the train, inference and eval steps (yt8m_segments/precision.py): "
    "mixed_bfloat16 (CPUs with AMX or AVX512-BF16, TPUs, GPUs from Ampere) "
    "or mixed_float16 (GPUs; the loss is scaled) run the matrix products in "
    "16 bits, weights, statistics and probabilities staying float32. Runs "
    "are saved in float32 whatever trained them.")
JIT_COMPILE = flags.DEFINE_bool(
    "jit_compile", False, "Compile the train, inference and eval steps with XLA.")
FEATURE_SIZES = flags.DEFINE_string("feature_sizes",
                    ",".join(str(s) for s in records.DEFAULT_FEATURE_SIZES),
                    "Comma-separated widths of --feature_names.")
MODEL_HPARAMS = flags.DEFINE_multi_string(
    "model_hparams", [],
    "Model hyperparameters over the model's paper defaults: key=value,... or "
    "a JSON object; repeatable, later ones win (python -m "
    "yt8m_segments.models --list; keys in yt8m_segments/models/registry.py).")
NUM_CLASSES = flags.DEFINE_integer("num_classes", records.NUM_CLASSES,
                     "Size of the video-level vocabulary.")
flags.DEFINE_string("segment_labels_file", None,
                    "A segment_label_ids.csv naming the segment-rated classes. "
                    "Without it they are the classes rated in the records.")
flags.DEFINE_string("ground_truth_file", None,
                    "Rated pairs CSV (header segment_id,class,score): what "
                    "eval.py scores against, inference --refine=auto and the "
                    "stacker learn from (else the records of "
                    "--eval_data_pattern).")
flags.DEFINE_integer("segment_max_pred", 100000,
                     "K: at most this many segments per class in a "
                     "submission, and the K of MAP@K.")

flags.DEFINE_integer("context_frames", 0,
                     "Frames of context before and after each 5-frame segment "
                     "(4th-place paper: 5 for orderless models, 15 for "
                     "recurrent ones). Inference and eval default to the "
                     "value the model was fine-tuned with.")
flags.DEFINE_enum("compression", "auto", ["auto", "none", "GZIP"],
                  "Record file compression; auto looks at each file.")
flags.DEFINE_bool("skip_corrupt_records", False,
                  "Skip records that fail their checksums (and the tails of "
                  "truncated files), reporting the count, instead of failing.")
flags.DEFINE_bool("frame_features", True,
                  "Whole-video input (train.py pretraining, eval.py "
                  "--eval_metric=gap): frame-level records (--feature_names="
                  "rgb,audio); false: the 2018 video-level records "
                  "(tf.train.Example, --feature_names=mean_rgb,mean_audio), "
                  "each video one frame of its means, for video-level models "
                  "like ResNetLike. A run trained so stores the frame "
                  "features they average (rgb, audio), so later stages read "
                  "frame records.")
flags.DEFINE_integer("max_frames", records.MAX_FRAMES,
                     "Frames read per whole video: pretraining, GAP "
                     "evaluation, the video-level probabilities of inference "
                     "(alias --video_max_frames) and export (alias "
                     "--export_max_frames).")
flags.DEFINE_enum("eval_metric", "map", ["map", "gap"],
                  "How eval.py scores a model and train.py validates: map "
                  "(MAP@K on the rated segments of --eval_data_pattern) or "
                  "gap (GAP@--gap_k of the video predictions over whole "
                  "videos against their video labels, as the 2018 challenge; "
                  "pretraining).")
flags.DEFINE_integer("gap_k", 20, "k of GAP@k (the 2018 challenge: 20).")
flags.DEFINE_integer("num_folds", 1,
                     "Split the files into this many folds by file (file i "
                     "is in fold i % num_folds); 6 gives the 5/6 vs 1/6 split.")
flags.DEFINE_integer("fold", 0,
                     "The held-out fold: training reads the other folds, "
                     "evaluation this one.")

flags.DEFINE_integer("seed", 0,
                     "Random seed. train.py: shuffling and initialisation; "
                     "synthetic.py and demo.py: the generated data (same "
                     "seed, same bytes) and the demo's runs.")
flags.DEFINE_string("output_dir", None,
                    "Where the command writes: synthetic.py the dataset, "
                    "demo.py its data, runs and submissions (default "
                    "demo_output), swa.py the averaged run (default "
                    "<train_dir>_swa_A_B).")

FLAGS = flags.FLAGS


def feature_spec():
    return FeatureSpec.from_flags(FLAGS.feature_names, FLAGS.feature_sizes)


def data_files(pattern, holdout):
    """The files of `pattern` on one side of the --num_folds/--fold split."""
    return reader.select_fold(reader.list_files(pattern), FLAGS.num_folds,
                              FLAGS.fold, holdout)


def context_frames_override():
    """--context_frames when given on the command line, else None (the run's)."""
    return FLAGS.context_frames if FLAGS["context_frames"].present else None


def input_options():
    """Keyword arguments every view takes from the shared input flags."""
    return {"compression": FLAGS.compression,
            "skip_corrupt_records": FLAGS.skip_corrupt_records}

flags.DEFINE_string("cache_dir", None,
                    "A probability cache directory (yt8m_segments/postprocess/cache.py): "
                    "inference.py writes it (parts in <dir>/parts make a "
                    "rerun resume; with --merge_caches, the merged cache), "
                    "eval.py scores its segment probabilities.")
# Scoring test records (inference.py, beam_inference.py).
flags.DEFINE_string("input_data_pattern", None,
                    "Glob of test records (comma-separated globs allowed).")
flags.DEFINE_integer("num_shards", 1, "Split the input files into this many "
                     "shards (file i goes to shard i % num_shards): "
                     "inference.py processes --shard_index's, "
                     "beam_inference.py writes them all in parallel.")

# Combining caches (ensemble.py, stacker.py).
CACHES = flags.DEFINE_string("caches", None,
                    "Comma-separated probability cache directories: "
                    "ensemble.py averages them; stacker.py scores them "
                    "(caches of the --train_caches models, in that order).")
OUTPUT_CACHE = flags.DEFINE_string("output_cache", None,
                    "Directory of the cache ensemble.py or stacker.py writes.")

# Video-level refinement (inference.py, and eval/export that read caches).
flags.DEFINE_string("video_train_dir", None,
                    "Training run over the whole vocabulary (the pretrained "
                    "run) whose whole-video probabilities refine the segment "
                    "scores; inference stores them in the cache.")
flags.DEFINE_string("refine", "none",
                    "Refinement with video-level probabilities: none, topk, "
                    "confidence, video_num, fusion, or a comma-separated "
                    "combination (filters intersect; 3rd place: topk,fusion). "
                    "See yt8m_segments/postprocess/refine.py. inference.py also takes "
                    "auto: the refinement (and its parameter) that scores "
                    "best on held-out rated videos, --refine_cache_dir "
                    "(yt8m_segments/postprocess/refine_choice.py); eval.py scores the "
                    "same grid with --choose_refinement.")
flags.DEFINE_integer("refine_topk", 20,
                     "topk: keep a class for a video's segments only if it is "
                     "among the video's top this-many classes.")
flags.DEFINE_float("refine_threshold", 0.00025,
                   "confidence: keep a class only where the video's "
                   "probability of it is above this (2nd place: 2.5e-4).")
flags.DEFINE_integer("refine_videos_per_class", 2000,
                     "video_num: keep a class only in its top this-many videos.")
flags.DEFINE_float("refine_videos_fraction", None,
                   "video_num: keep a class only in its top this share of the "
                   "videos, in (0, 1] (instead of --refine_videos_per_class; "
                   "a share carries over between sets of different sizes, "
                   "e.g. 0.02 ~ 2000 of the 89,506 test videos).")
flags.DEFINE_float("refine_fusion_weight", 0.05,
                   "fusion: rank by video^b * segment^(1-b) with this b "
                   "(3rd place: 0.05).")


def refine_options():
    """refine.RefineOptions from the --refine* flags."""
    from yt8m_segments.postprocess import refine  # imported lazily: flags stay light
    return refine.options_from_flags(FLAGS)


def labels_from_flags(what="a cache is scored"):
    """(video labels or None, rated pairs) from --ground_truth_file, else the
    records of --eval_data_pattern; `what` needs them (the usage error)."""
    from absl import app  # imported lazily: flags stay light
    from yt8m_segments.evaluation import evaluate
    from yt8m_segments.postprocess import submission
    if FLAGS.ground_truth_file:
        return None, submission.read_ground_truth(FLAGS.ground_truth_file)
    if not FLAGS.eval_data_pattern:
        raise app.UsageError(f"{what} against --ground_truth_file or the rated "
                             "pairs of --eval_data_pattern")
    files = data_files(FLAGS.eval_data_pattern, holdout=True)
    return evaluate.read_record_labels(files, FLAGS.compression)


# The generated dataset (synthetic.py, demo.py): the generator's options
# (data/synthetic.py DEFAULTS; its min_frames / max_frames are the flags
# --min_video_frames / --max_video_frames, --max_frames being what is read).
flags.DEFINE_integer("num_train_videos", 2000, "Train videos (video labels only).")
flags.DEFINE_integer("num_validate_videos", 800, "Validate videos (rated segments).")
flags.DEFINE_integer("num_test_videos", 300, "Test videos (ground truth in a CSV).")
flags.DEFINE_integer("num_active_classes", synthetic.DEFAULTS["num_active_classes"],
                     "Classes that actually occur (the vocabulary is --num_classes).")
flags.DEFINE_integer("num_segment_classes", synthetic.DEFAULTS["num_segment_classes"],
                     "Active classes rated at segment level.")
flags.DEFINE_integer("min_video_frames", synthetic.DEFAULTS["min_frames"],
                     "Shortest generated video (s, one frame a second).")
flags.DEFINE_integer("max_video_frames", synthetic.DEFAULTS["max_frames"],
                     "Longest generated video (s).")
flags.DEFINE_integer("num_files_per_split", synthetic.DEFAULTS["num_files_per_split"],
                     "Record files per split.")
flags.DEFINE_float("signal_strength", synthetic.DEFAULTS["signal_strength"],
                   "Scales each entity's pattern strength; < 1 is a weaker signal.")
flags.DEFINE_float("noise_std", synthetic.DEFAULTS["noise_std"],
                   "Std of the Gaussian noise added to every frame.")
flags.DEFINE_float("background_std", synthetic.DEFAULTS["background_std"],
                   "Std of each scene's Gaussian background vector.")
flags.DEFINE_float("shared_fraction", synthetic.DEFAULTS["shared_fraction"],
                   "In [0, 1]: cosine of confusable group mates' patterns; "
                   "higher is harder to tell apart.")
flags.DEFINE_float("label_drop_prob", synthetic.DEFAULTS["label_drop_prob"],
                   "Probability that a present entity is missing from the "
                   "video labels (one label is always kept).")
flags.DEFINE_float("spurious_label_prob", synthetic.DEFAULTS["spurious_label_prob"],
                   "Probability that a video gets one label it does not show.")
flags.DEFINE_float("full_video_prob", synthetic.DEFAULTS["full_video_prob"],
                   "Probability that a video's first entity is present in "
                   "every full window instead of in 1-2 runs (its group mates "
                   "are then left out).")
# The generator's option of each flag whose name differs.
_GENERATOR_OPTION_FLAGS = {"min_frames": "min_video_frames",
                           "max_frames": "max_video_frames"}


def generated_data():
    """Keyword arguments of data.synthetic.generate (sizes and options, all
    but output_dir, seed and video_level) from the flags."""
    sizes = {name: FLAGS[name].value for name in (
        "num_train_videos", "num_validate_videos", "num_test_videos")}
    options = {option: FLAGS[_GENERATOR_OPTION_FLAGS.get(option, option)].value
               for option in synthetic.DEFAULTS}
    return {**sizes, **options}


# How --help groups these flags (cli.help_text); tests/test_cli.py checks
# that every flag above is in exactly one group.
GROUPS = (
    ("run and model", ("train_dir", "batch_size", "model_hparams",
                       "num_classes", "feature_names", "feature_sizes", "seed",
                       "output_dir", "mixed_precision", "jit_compile")),
    ("input records", ("eval_data_pattern", "input_data_pattern",
                       "context_frames", "compression", "skip_corrupt_records",
                       "frame_features", "max_frames", "num_folds", "fold",
                       "num_shards")),
    ("evaluation", ("segment_labels_file", "ground_truth_file",
                    "segment_max_pred", "eval_metric", "gap_k")),
    ("probability caches and refinement", (
        "cache_dir", "caches", "output_cache", "video_train_dir", "refine",
        "refine_topk", "refine_threshold", "refine_videos_per_class",
        "refine_videos_fraction", "refine_fusion_weight")),
    ("generated data", ("num_train_videos", "num_validate_videos",
                        "num_test_videos", "num_active_classes",
                        "num_segment_classes", "min_video_frames",
                        "max_video_frames", "num_files_per_split",
                        "signal_strength", "noise_std", "background_std",
                        "shared_fraction", "label_drop_prob",
                        "spurious_label_prob", "full_video_prob")),
)
