r"""Simple references beside the project's numbers, on the same record files.

  python bench/baselines.py --train_data_pattern='data/train-*.tfrecord' \
      --eval_data_pattern='data/validate-*.tfrecord' \
      --input_data_pattern='data/test-*.tfrecord' \
      --ground_truth_file=data/test_ground_truth.csv \
      [--pretrain_dir=runs/pretrain] [--cache_dir=runs/test_cache] \
      [--generator_file=data/generator.json]

Video level (GAP@20 on the videos of --eval_data_pattern against their video
labels): the train label frequencies and a ridge regression on each video's
mean dequantized frame (yt8m_segments/evaluation/baselines.py), beside the pretrained
run's GAP. Segment level (MAP@K on the rated test pairs, K scaled to the
test windows): random scores and a logistic regression on 5-frame window
means fitted on the rated segments of --eval_data_pattern, beside the
project's test cache (inference.py --cache_dir) and, on generated data
(--generator_file, written by yt8m_segments.synthetic), the oracle: a matched
filter with the generator's true class patterns. Any record files work
(frame-level train, validate and test records); the oracle needs generated
ones.
"""

import argparse
import time

from yt8m_segments.evaluation import baselines
from yt8m_segments.evaluation import evaluate
from yt8m_segments.postprocess import submission
from yt8m_segments.data import synthetic
from yt8m_segments.data import classes
from yt8m_segments.data import reader
from yt8m_segments.data.features import FeatureSpec


def project_rows(pretrain_dir, cache_dir, validate_files, ground_truth, k):
    """The project's figures on the same files: {row name: value}."""
    rows = {}
    if pretrain_dir:
        rows["video: project pretrained run"] = evaluate.evaluate_model_gap(
            pretrain_dir, validate_files)
    if cache_dir:
        rows["segment: project cache"] = evaluate.evaluate_cache(
            cache_dir, ground_truth, k)[0]
    return rows


def format_table(rows, k):
    """One line per figure, video rows (GAP@20) then segment rows (MAP@K)."""
    width = max(len(name) for name in rows)
    lines = [f"{'reference':<{width}}  metric    value", "-" * (width + 18)]
    for name, value in rows.items():
        metric = "GAP@20" if name.startswith("video") else f"MAP@{k}"
        lines.append(f"{name:<{width}}  {metric:<8}  {value:.4f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train_data_pattern", required=True)
    parser.add_argument("--eval_data_pattern", required=True,
                        help="validate records: rated segments, video labels")
    parser.add_argument("--input_data_pattern", required=True,
                        help="test records, every window scored")
    parser.add_argument("--ground_truth_file", required=True)
    parser.add_argument("--segment_labels_file", default=None)
    parser.add_argument("--pretrain_dir", default=None)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--generator_file", default=None)
    args = parser.parse_args()

    start = time.time()
    files = {name: reader.list_files(pattern) for name, pattern in (
        ("train", args.train_data_pattern),
        ("validate", args.eval_data_pattern),
        ("test", args.input_data_pattern))}
    ground_truth = submission.read_ground_truth(args.ground_truth_file)
    class_ids = classes.resolve_segment_label_ids(args.segment_labels_file,
                                                  args.eval_data_pattern)
    patterns = None
    if args.generator_file:
        seed, options = synthetic.read_generator_file(args.generator_file)
        patterns = synthetic.class_patterns(seed, **options)
    table = baselines.reference_table(
        files["train"], files["validate"], files["test"], ground_truth,
        FeatureSpec(), class_ids, patterns=patterns)
    k = table.pop("K")
    table.update(project_rows(args.pretrain_dir, args.cache_dir,
                              files["validate"], ground_truth, k))
    print(format_table(table, k))
    print(f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
