r"""Weighted average of probability caches (4th place: 0.795 single -> 0.814).

  python -m yt8m_segments.ensemble --caches=A,B,C --weights=0.5,0.3,0.2 \
      --output_cache=D

The caches must rank the same segments and classes in the same order (caches
written by inference over the same input files do); anything else is refused
with an error naming the two caches. The result is sum_i w_i p_i / sum_i w_i,
computed in float32 per row block and stored as fp16, streamed into D (same
layout as every cache, see cache.py), so no cache is ever held whole.

Video-level probabilities, when the caches have them, are averaged the same
way over the caches that have them (their video ids and classes must agree);
refinement of the ensemble then uses the averaged video predictions.
"""

import json

from absl import app
from absl import flags
from absl import logging

from yt8m_segments import cli
from yt8m_segments import flag_defs
from yt8m_segments.postprocess import ensemble as ensemble_lib

flags.adopt_module_key_flags(cli)
FLAGS = flags.FLAGS

flags.DEFINE_string("weights", None, "Comma-separated weights, one per "
                    "cache (default: equal). Normalised by their sum.")
flags.declare_key_flag(flag_defs.CACHES)
flags.declare_key_flag(flag_defs.OUTPUT_CACHE)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.caches or not FLAGS.output_cache:
        raise app.UsageError("--caches and --output_cache are required")
    paths = ensemble_lib.parse_list(FLAGS.caches, "caches")
    weights = ensemble_lib.parse_weights(FLAGS.weights, len(paths))
    path = ensemble_lib.ensemble_caches(paths, FLAGS.output_cache, weights)
    logging.info("wrote %s", path)
    print(json.dumps({"output_cache": path, "weights": weights}))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
