r"""List the models --model takes, with their parameter counts.

  python -m yt8m_segments.models --list [--num_classes=3862]
      [--feature_sizes=1024,128] [--model_hparams=key=value,...]

Counts are of every weight (batch-norm statistics included) at each model's
default (paper) sizes with its paper's classifier, built without initialising
any weight. `Mixture` (sub-models named by the mixture_models hparam) is not
listed; every `Mix<model>` is, at mixture_size 3.
"""

import argparse

from yt8m_segments.data import records
from yt8m_segments.models import registry


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


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m yt8m_segments.models", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true",
                        help="print every model with its parameter count")
    parser.add_argument("--num_classes", type=int, default=records.NUM_CLASSES)
    parser.add_argument("--feature_sizes", default="1024,128")
    parser.add_argument("--model_hparams", action="append", default=[],
                        help="overrides, as train.py's --model_hparams")
    args = parser.parse_args(argv)
    if not args.list:
        parser.print_help()
        return 0
    sizes = tuple(int(s) for s in args.feature_sizes.split(",") if s.strip())
    rows = table(args.num_classes, sizes,
                 registry.parse_hparams(args.model_hparams))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
