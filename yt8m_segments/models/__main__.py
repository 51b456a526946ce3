r"""List the models --model takes, with their parameter counts.

  python -m yt8m_segments.models --list [--num_classes=3862]
      [--feature_sizes=1024,128] [--model_hparams=key=value,...]

Counts are of every weight (batch-norm statistics included) at each model's
default (paper) sizes with its paper's classifier, built without initialising
any weight. `Mixture` (sub-models named by the mixture_models hparam) is not
listed; every `Mix<model>` is, at mixture_size 3.
"""

from absl import app
from absl import flags

from yt8m_segments import cli
from yt8m_segments import flag_defs
from yt8m_segments.data import records
from yt8m_segments.models import registry

flags.DEFINE_bool("list", False, "Print every model with its parameter count.")
flags.adopt_module_key_flags(cli)
for _holder in (flag_defs.NUM_CLASSES, flag_defs.FEATURE_SIZES, flag_defs.MODEL_HPARAMS):
    flags.declare_key_flag(_holder)
FLAGS = flags.FLAGS


def table(num_classes=records.NUM_CLASSES, feature_sizes=registry.DEFAULT_FEATURE_SIZES,
          hparams=None):
    """Rows (model, classifier, parameters, source) for every registered model."""
    rows = []
    for name in registry.registered_models():
        classifier = ("Logistic" if registry.is_mixture_name(name)
                      else registry.MODELS[name].classifier)
        count = registry.count_parameters(name, classifier, num_classes,
                                          feature_sizes, hparams)
        rows.append((name, classifier, count, registry.describe(name)))
    return rows


def format_table(rows):
    lines = [f"{'model':<24}{'classifier':<11}{'parameters':>14}  source",
             f"{'-' * 23} {'-' * 10} {'-' * 14}  {'-' * 6}"]
    for name, classifier, count, source in rows:
        lines.append(f"{name:<24}{classifier:<11}{count:>14,}  {source}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.list:
        print(FLAGS.main_module_help())
        return
    sizes = tuple(int(s) for s in FLAGS.feature_sizes.split(",") if s.strip())
    rows = table(FLAGS.num_classes, sizes, registry.parse_hparams(FLAGS.model_hparams))
    print(format_table(rows))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
