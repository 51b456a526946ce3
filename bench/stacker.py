r"""LightGBM stacker prediction: every pair vs each class's top candidates.

  python bench/stacker.py [--segments=40000] [--classes=1000] [--multiple=3]

Two generated caches of the same segments (an informative model and a noisy
one, fp16, video probabilities included) and a stacker trained on rated
pairs of a third pair of caches. Prediction runs twice in this process on
the same inputs: scoring all N x C pairs (the baseline), then with
`candidates = multiple * K` (K = round(100000 * N / 2062258), the challenge's
ratio). Prints wall time, the ratio, MAP@K, and how much of each class's
top K (those strictly above the K-th score) the candidates keep.
"""

import argparse
import os
import tempfile
import time

import numpy as np

from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.evaluation import metrics
from yt8m_segments.postprocess import stacker
from yt8m_segments.postprocess import submission


def make_caches(directory, name, num_segments, num_classes, seed):
    """(cache paths, ground truth of ~5 rated pairs per 4 segments)."""
    rng = np.random.default_rng(seed)
    per_video = 20
    num_videos = num_segments // per_video
    videos = np.array([f"{name}{v:06d}" for v in range(num_videos)])
    ids = np.array([f"{v}:{5 * s}" for v in videos for s in range(per_video)])
    truth = rng.random((len(ids), num_classes)) < 0.002
    class_ids = list(range(num_classes))
    good = np.clip(0.5 * truth + 0.5 * rng.random(truth.shape) ** 4, 0, 1)
    noisy = np.clip(0.2 * truth + 0.8 * rng.random(truth.shape) ** 4, 0, 1)
    video_probs = rng.random((num_videos, num_classes)).astype(np.float16)
    paths = []
    for model, probs in (("good", good), ("noisy", noisy)):
        paths.append(cache_lib.write_cache(
            os.path.join(directory, f"{name}_{model}"), ids,
            probs.astype(np.float16), class_ids, {"fingerprint": model},
            video_ids=videos, video_probs=video_probs,
            video_class_ids=class_ids))
    ground_truth = {}
    positives = np.argwhere(truth)
    negatives = np.argwhere(rng.random(truth.shape) < 0.002)
    for (row, column), score in [(p, 1.0) for p in positives] + [
            (n, 0.0) for n in negatives]:
        ground_truth.setdefault(int(column), {})[ids[row]] = score
    return paths, ground_truth


def kept_above_kth(full_path, cut_path, k):
    """Fraction of the pairs scored above their class's K-th best (every
    pair scored) that are in the class's top K with candidates only.

    LightGBM's scores are piecewise constant: pairs tied at the K-th score
    are an arbitrary choice either way, so only those above it are compared.
    """
    full = cache_lib.ProbabilityCache.open(full_path).segment_probs
    cut = submission.top_k_per_class(
        cache_lib.ProbabilityCache.open(cut_path).segment_probs, k)
    kept = total = 0
    for column in range(full.shape[1]):
        scores = full[:, column].astype(np.float32)
        kth = np.sort(scores)[-k]
        above = np.flatnonzero(scores > kth)
        kept += len(np.intersect1d(above, cut[column]))
        total += len(above)
    return kept / max(total, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=40000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--multiple", type=float, default=3.0)
    args = parser.parse_args()
    k = metrics.scaled_k(args.segments)
    candidates = int(args.multiple * k)
    with tempfile.TemporaryDirectory() as directory:
        train_paths, train_truth = make_caches(directory, "val", args.segments,
                                               args.classes, 1)
        test_paths, test_truth = make_caches(directory, "test", args.segments,
                                             args.classes, 2)
        stacker_dir = os.path.join(directory, "stacker")
        stacker.train(train_paths, train_truth, stacker_dir)  # 200 trees
        rows, results = [], {}
        for name, option in (("every pair", None),
                             (f"candidates {candidates}", candidates)):
            start = time.perf_counter()
            results[name] = stacker.predict(
                stacker_dir, test_paths, os.path.join(directory, str(option)),
                candidates=option)
            rows.append((name, time.perf_counter() - start))
        kept = kept_above_kth(*results.values(), k)
        scores = []
        for path in results.values():
            cache = cache_lib.ProbabilityCache.open(path)
            scores.append(metrics.segment_map_at_k(metrics.ranked_from_scores(
                cache.segment_ids, cache.segment_probs, cache.class_ids, k),
                test_truth, k))
    baseline = rows[0][1]
    print(f"{args.segments} segments x {args.classes} classes, K={k}, "
          f"{args.segments * args.classes:,} pairs")
    print(f"{'prediction':<22} {'seconds':>8} {'x every pair':>13} "
          f"{'MAP@K':>7}")
    print("-" * 53)
    for (name, seconds), score in zip(rows, scores):
        print(f"{name:<22} {seconds:>8.1f} {baseline / seconds:>13.1f} "
              f"{score:>7.4f}")
    print(f"pairs above their class's K-th score (every pair scored) that "
          f"the candidates' top K keeps: {100 * kept:.2f}%")


if __name__ == "__main__":
    main()
