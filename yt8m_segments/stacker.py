r"""A LightGBM stacker over cached probabilities (4th place: 0.814 -> 0.817).

Optional extra: pip install 'yt8m_segments[stacker]' (lightgbm).

Train on the rated pairs of validate caches (one cache per model, all over
the same segments), then score test caches of the same models, in the same
order, into a new cache:

  python -m yt8m_segments.stacker --train_caches=VA,VB \
      --ground_truth_file=G (or --eval_data_pattern='validate-*') \
      --stacker_dir=S [--caches=TA,TB --output_cache=D]
  python -m yt8m_segments.stacker --stacker_dir=S --caches=TA,TB --output_cache=D

Features of a (segment, class) pair, class-agnostic (FEATURES):
  p_0 .. p_{M-1}    each model's probability of the class for the segment
  mean, std, max    over the M models
  video             the video-level probability of the class (mean over the
                    caches that have video probabilities; NaN if the video
                    vocabulary lacks the class); only when the caches have them
  rank              the class's rank within the segment by mean (0 = best)
Label: the rating (score > 0) of the pair; unrated pairs are not used.
The output cache holds the stacker's probabilities for every pair, and the
caches' averaged video probabilities, so it can be refined, ensembled or
evaluated like any other cache. Prediction is by row blocks.

Scoring every pair means N x C LightGBM predictions (2 billion on the full
test set: hours), though a submission keeps K per class. With
`--stacker_candidates=N` only each class's N best segments by the models'
mean probability (the `mean` feature) are scored; every other pair gets 0,
below any LightGBM probability. With N a few times K the submission is
unchanged unless the stacker lifts a pair from below the N-th mean into its
top K; the output cache then ranks only the candidates, so ensemble it with
others only if they are cut the same way.
"""

from absl import app
from absl import flags

from yt8m_segments import cli
from yt8m_segments import flag_defs
from yt8m_segments.postprocess import ensemble as ensemble_lib
from yt8m_segments.postprocess import stacker as stacker_lib

flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS

flags.DEFINE_string("train_caches", None, "Comma-separated validate caches "
                    "(one per model) to train on.")
flags.DEFINE_string("stacker_dir", None, "Where the stacker is saved / read.")
flags.DEFINE_integer("stacker_trees", 200, "Boosting rounds.")
flags.DEFINE_float("stacker_learning_rate", 0.05, "LightGBM learning rate.")
flags.DEFINE_integer("stacker_leaves", 31, "LightGBM num_leaves.")
flags.DEFINE_integer("stacker_min_data_in_leaf", 20,
                     "LightGBM min_data_in_leaf.")
flags.DEFINE_integer("stacker_seed", 0, "LightGBM seed.")
flags.DEFINE_integer("stacker_candidates", None,
                     "Score only each class's this many best segments by the "
                     "models' mean probability (others get 0): a few times "
                     "--segment_max_pred keeps the submission and cuts "
                     "LightGBM's work by N / this.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.stacker_dir:
        raise app.UsageError("--stacker_dir is required")
    if not FLAGS.train_caches and not FLAGS.caches:
        raise app.UsageError("give --train_caches (train), --caches with "
                             "--output_cache (predict), or both")
    if FLAGS.caches and not FLAGS.output_cache:
        raise app.UsageError("--caches needs --output_cache")
    try:
        if FLAGS.train_caches:
            _, ground_truth = flag_defs.labels_from_flags("the stacker trains")
            stacker_lib.train(
                ensemble_lib.parse_list(FLAGS.train_caches, "train_caches"),
                ground_truth, FLAGS.stacker_dir, FLAGS.stacker_trees,
                FLAGS.stacker_learning_rate, FLAGS.stacker_leaves,
                FLAGS.stacker_min_data_in_leaf, FLAGS.stacker_seed)
            print(f"stacker {FLAGS.stacker_dir}")
        if FLAGS.caches:
            path = stacker_lib.predict(
                FLAGS.stacker_dir,
                ensemble_lib.parse_list(FLAGS.caches, "caches"),
                FLAGS.output_cache, candidates=FLAGS.stacker_candidates)
            print(f"output_cache {path}")
    except ImportError as error:  # the optional lightgbm
        raise app.UsageError(str(error)) from None


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
