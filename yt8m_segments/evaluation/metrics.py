"""The challenge metric, MAP@K over rated segments only (docs/metric.md).

Unrated (segment, class) pairs are not negatives: they are removed from each
class's list after truncating it to K, so they cost budget but never precision.
"""

import itertools

import numpy as np

from yt8m_segments.postprocess import submission

TEST_SEGMENTS = 2062258
TEST_MAX_PRED = 100000


def scaled_k(num_segments):
    """K for a test set of `num_segments`, keeping the real 100,000 / 2,062,258.

    Integer arithmetic: round half up, exact for any size.
    """
    scaled = (2 * TEST_MAX_PRED * num_segments + TEST_SEGMENTS) // (2 * TEST_SEGMENTS)
    return max(1, scaled)


def num_positives(ground_truth):
    """dict class id -> number of positively rated segments (score > 0)."""
    return {class_id: sum(score > 0 for score in ratings.values())
            for class_id, ratings in ground_truth.items()}


def segment_ap_per_class(ranked_segments, ground_truth, k):
    """dict class id -> AP@k for every class with a positive in `ground_truth`.

    A class missing from `ranked_segments` scores 0. The rating lookup runs at C
    speed (map over dict.get), so 1000 classes x 100,000 segments take seconds.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    positives = num_positives(ground_truth)
    per_class = {}
    for class_id, ratings in ground_truth.items():
        if positives[class_id] == 0:
            continue
        ranked = ranked_segments.get(class_id, ())[:k]
        scores = np.fromiter(
            map(ratings.get, ranked, itertools.repeat(np.nan, len(ranked))),
            dtype=np.float64, count=len(ranked))
        relevant = scores[~np.isnan(scores)] > 0
        hits = np.cumsum(relevant)[relevant]
        ranks = np.flatnonzero(relevant) + 1
        per_class[class_id] = float(np.sum(hits / ranks) / positives[class_id])
    return per_class


def mean_ap(per_class):
    """The mean of `segment_ap_per_class`'s values; there must be at least one."""
    if not per_class:
        raise ValueError("ground truth has no positively rated segment")
    return float(np.mean(list(per_class.values())))


def segment_map_at_k(ranked_segments, ground_truth, k):
    """MAP@k: the mean AP over classes with at least one positive rating."""
    return mean_ap(segment_ap_per_class(ranked_segments, ground_truth, k))


def ranked_from_scores(segment_ids, scores, class_ids, k):
    """dict class id -> its top-k segment ids by score (ties: lower row first)."""
    segment_ids = np.asarray(segment_ids)
    rows = submission.top_k_per_class(scores, k)
    return {int(class_id): segment_ids[class_rows].tolist()
            for class_id, class_rows in zip(class_ids, rows)}


def gap_at_k(predictions, labels, k=20, num_positives=None, block_rows=4096):
    """Global average precision at k (video level, docs/metric.md).

    As the starter code's eval_util: each video's top-k (class, score) pairs
    (ties: lower column first) are pooled across videos, sorted by score
    (stable: earlier video, then better rank, first) and scored as one ranked
    list, AP = sum_i P(i) rel(i) / num_positives, where num_positives is the
    number of positive labels of all videos (default: `labels.sum()`; pass
    it when some labels fall outside the prediction columns).

    predictions: [V, C] scores (may be a float16 memmap; read in blocks).
    labels: [V, C] multi-hot (bool or 0/1).
    """
    if predictions.ndim != 2 or labels.shape != predictions.shape:
        raise ValueError(f"predictions {predictions.shape} and labels "
                         f"{labels.shape} must both be [videos, classes]")
    gap = GapAccumulator(k)
    for start in range(0, predictions.shape[0], block_rows):
        gap.add(predictions[start:start + block_rows],
                labels[start:start + block_rows])
    return gap.result(num_positives)


class GapAccumulator:
    """`gap_at_k` over videos given block by block: keeps only each video's
    top-k (score, hit) pairs, so the [V, C] predictions are never held."""

    def __init__(self, k=20):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.scores, self.hits = [], []
        self.num_positives = 0

    def add(self, predictions, labels):
        """[b, C] scores and [b, C] multi-hot labels of the next videos."""
        block = np.asarray(predictions, np.float32)
        if np.isnan(block).any():
            raise ValueError("predictions contain NaN")
        positive = np.asarray(labels) > 0
        top = np.argsort(-block, axis=1, kind="stable")[:, :self.k]
        self.scores.append(np.take_along_axis(block, top, axis=1).ravel())
        self.hits.append(np.take_along_axis(positive, top, axis=1).ravel())
        self.num_positives += int(np.count_nonzero(positive))

    def result(self, num_positives=None):
        """GAP@k; `num_positives` overrides the count of the labels given."""
        if num_positives is None:
            num_positives = self.num_positives
        if num_positives == 0 or not self.scores:
            return 0.0
        scores = np.concatenate(self.scores)
        hits = np.concatenate(self.hits)[np.argsort(-scores, kind="stable")]
        ranks = np.flatnonzero(hits) + 1
        return float(np.sum(np.arange(1, len(ranks) + 1) / ranks)
                     / num_positives)
