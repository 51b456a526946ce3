r"""Stochastic Weight Averaging over saved checkpoints (Izmailov et al. 2018).

    python -m yt8m_segments.swa --train_dir=F --start_step=A --end_step=B \
        [--output_dir=G] [--batch_norm_stats=average|last]

averages the weights of every checkpoint F/checkpoints/ckpt-<step>.weights.h5
(Keras `model.save_weights` files) with A <= step <= B, loads them into the
architecture of F/model.keras, and writes a new train_dir G (default
F_swa_A_B) holding model.keras with the averaged weights and F's
run_config.json plus "swa": {"start_step", "end_step", "steps",
"source_train_dir", "batch_norm_stats"}. G is a train_dir like any other:
inference, eval and export take it unchanged. Writes are atomic
(run_artifacts.save_run).

BatchNorm moving statistics are weights like the others and are averaged too
by default (`--batch_norm_stats=last` keeps the last checkpoint's instead).
Neither is exact: the averaged network's activations have statistics of
their own, and the textbook SWA step recomputes them with one pass over
training data with training=True (momentum-free running averages). The
averaged statistics are usually close when the checkpoints are close, which
is the case SWA targets.

The 2nd-place recipe (shared/papers/seed-2nd-place-..., "Model Selection and
Data Size Effects"):
  1. fine-tune on 5/6 of the segment files (--num_folds=6 --fold=k: training
     reads the other five folds) with checkpoints every N steps and
     validation MAP on the held-out fold;
  2. from the validation MAP curve pick a good interval of steps [A, B];
  3. fine-tune again on all the files (--num_folds=1), same schedule, for B
     steps;
  4. average the checkpoints of [A, B] of that run with this command.
"""

from absl import app
from absl import flags

from yt8m_segments import cli
from yt8m_segments import flag_defs
from yt8m_segments.training import swa

flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(flag_defs)
FLAGS = flags.FLAGS

flags.DEFINE_integer("start_step", None, "First step of the interval.")
flags.DEFINE_integer("end_step", None, "Last step of the interval.")
flags.DEFINE_enum("batch_norm_stats", "average", list(swa.BATCH_NORM_STATS),
                  "BatchNorm moving statistics: average them with the "
                  "weights, or keep the last checkpoint's.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("train_dir", "start_step", "end_step"):
        if FLAGS[name].value is None:
            raise app.UsageError(f"--{name} is required")
    output_dir, steps = swa.swa_train_dir(
        FLAGS.train_dir, FLAGS.start_step, FLAGS.end_step, FLAGS.output_dir,
        FLAGS.batch_norm_stats)
    print(f"averaged {len(steps)} checkpoints (steps {steps[0]}..{steps[-1]}) "
          f"into {output_dir}")


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
