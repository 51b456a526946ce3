r"""How the segment baseline grows with rated videos: is a world data-limited?

  python bench/rated_data_curve.py [--setting=weak_signal] [--max_videos=6400]
      [--work_dir=/tmp/yt8m_rated_curve] [--seed=0]

Generates one world of bench/recipes.py with `--max_videos` rated validate
videos (and the bench's 300 test videos), then fits the window-mean logistic
of yt8m_segments/evaluation/baselines.py on the first 1/8, 1/4, 1/2 and all of them and
prints its MAP@K on the test set beside the matched-filter oracle. Where the
fine-tuned model sits far below the oracle (recipes' weak_signal and
many_classes worlds), a curve still climbing says the gap is the rated data's,
not the model's.
"""

import argparse
import os

import numpy as np

import recipes
from yt8m_segments.evaluation import baselines
from yt8m_segments.evaluation import metrics
from yt8m_segments.postprocess import submission
from yt8m_segments.data import synthetic
from yt8m_segments.data import classes
from yt8m_segments.data import reader
from yt8m_segments.data.features import FeatureSpec


def curve(setting, max_videos, work_dir, seed):
    """[(rated videos, logistic MAP@K)], oracle MAP@K, K."""
    options = recipes.SETTINGS[setting]
    data = os.path.join(work_dir, setting)
    synthetic.generate(data, seed=seed, num_train_videos=20,
                       num_validate_videos=max_videos,
                       num_test_videos=recipes.SIZES["num_test_videos"],
                       **options)
    files = {split: reader.list_files(os.path.join(data, f"{split}-*.tfrecord"))
             for split in ("validate", "test")}
    class_ids = classes.read_segment_label_ids(
        os.path.join(data, "segment_label_ids.csv"))
    truth = submission.read_ground_truth(
        os.path.join(data, "test_ground_truth.csv"))
    spec = FeatureSpec()
    segment_ids, means, labels, rated = baselines.rated_window_means(
        files["validate"], spec, class_ids)
    videos = np.char.partition(segment_ids.astype(str), ":")[:, 0]
    order = np.array(list(dict.fromkeys(videos)))
    # The test windows' means, read once and scored by every reader below.
    test_ids, test_means = baselines.window_scores(files["test"], spec,
                                                   lambda window: window)
    k = metrics.scaled_k(len(test_ids))
    oracle = baselines.segment_map(
        test_ids, baselines.matched_filter(
            synthetic.class_patterns(seed, **options), class_ids)(test_means),
        class_ids, truth, k)
    points = []
    for count in (max_videos // 8, max_videos // 4, max_videos // 2,
                  max_videos):
        keep = np.isin(videos, order[:count])
        logistic = baselines.RatedLogistic().fit(means[keep], labels[keep],
                                                 rated[keep])
        points.append((count, baselines.segment_map(
            test_ids, logistic.predict(test_means), class_ids, truth, k)))
    return points, oracle, k


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", default="weak_signal",
                        choices=sorted(recipes.SETTINGS))
    parser.add_argument("--max_videos", type=int, default=6400)
    parser.add_argument("--work_dir", default="/tmp/yt8m_rated_curve")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    points, oracle, k = curve(args.setting, args.max_videos, args.work_dir,
                              args.seed)
    print(f"| {args.setting}: rated videos | " + " | ".join(
        str(count) for count, _ in points) + " | oracle |")
    print("|---|" + "---:|" * (len(points) + 1))
    print(f"| window-mean logistic, MAP@{k} | " + " | ".join(
        f"{value:.4f}" for _, value in points) + f" | {oracle:.4f} |")


if __name__ == "__main__":
    main()
