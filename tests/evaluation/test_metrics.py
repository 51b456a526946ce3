"""MAP@K against a slow loop-over-ranks reference and hand-computed values."""

import numpy as np
import pytest

from yt8m_segments.evaluation import metrics


def reference_ap(ranked, ratings, k):
    """docs/metric.md spelled out: truncate, drop unrated, average precision."""
    rated = [s for s in list(ranked)[:k] if s in ratings]
    num_positive = sum(1 for score in ratings.values() if score > 0)
    hits, total = 0, 0.0
    for rank, segment in enumerate(rated, start=1):
        if ratings[segment] > 0:
            hits += 1
            total += hits / rank
    return total / num_positive


def reference_map(ranked_segments, ground_truth, k):
    aps = [reference_ap(ranked_segments.get(c, []), ratings, k)
           for c, ratings in ground_truth.items()
           if any(score > 0 for score in ratings.values())]
    return sum(aps) / len(aps)


def reference_ranked(segment_ids, scores, class_ids, k):
    order = np.argsort(-scores.astype(np.float64), axis=0, kind="stable")[:k]
    return {int(c): [segment_ids[i] for i in order[:, j]]
            for j, c in enumerate(class_ids)}


# Class 1: a+, b-, c+, d+ rated; u unrated. d is never ranked, so N_1 = 3.
RATINGS_1 = {"a:0": 1.0, "b:0": 0.0, "c:0": 1.0, "d:0": 1.0}
RANKED_1 = ["a:0", "u:0", "b:0", "c:0"]


def test_unrated_removed_after_truncation():
    # k=4: rated list a+ b- c+ -> (1/1 + 2/3) / 3 = 5/9.
    assert metrics.segment_map_at_k({1: RANKED_1}, {1: RATINGS_1}, 4) == (
        pytest.approx(5 / 9))
    # k=3: the unrated u takes a slot and pushes c out: a+ b- -> (1/1) / 3 = 1/3.
    assert metrics.segment_map_at_k({1: RANKED_1}, {1: RATINGS_1}, 3) == (
        pytest.approx(1 / 3))
    # Without u, k=3 keeps c again: 5/9.
    without_unrated = [s for s in RANKED_1 if s != "u:0"]
    assert metrics.segment_map_at_k({1: without_unrated}, {1: RATINGS_1}, 3) == (
        pytest.approx(5 / 9))


def test_truncation_drops_positive():
    # k=1: a+ only -> 1/3; c, found at rank 4, is lost.
    assert metrics.segment_map_at_k({1: RANKED_1}, {1: RATINGS_1}, 1) == (
        pytest.approx(1 / 3))


def test_no_positive_excluded_missing_class_zero():
    ground_truth = {1: RATINGS_1, 2: {"a:0": 0.0, "b:0": 0.0}, 3: {"c:0": 1.0}}
    ranked = {1: RANKED_1, 2: ["a:0", "b:0"], 9: ["a:0"]}
    per_class = metrics.segment_ap_per_class(ranked, ground_truth, 4)
    # Class 2 has no positive: out of the mean. Class 3 is not submitted: AP 0.
    assert per_class == {1: pytest.approx(5 / 9), 3: 0.0}
    # (5/9 + 0) / 2 = 5/18.
    assert metrics.segment_map_at_k(ranked, ground_truth, 4) == pytest.approx(5 / 18)


def test_no_positive_at_all_is_an_error():
    with pytest.raises(ValueError, match="no positively rated"):
        metrics.segment_map_at_k({1: ["a:0"]}, {1: {"a:0": 0.0}}, 1)


def test_ties_through_ranked_from_scores():
    segment_ids = ["v0:0", "v0:5", "v1:0", "v1:5"]
    scores = np.array([[0.5], [0.9], [0.5], [0.5]], dtype=np.float16)
    ranked = metrics.ranked_from_scores(segment_ids, scores, [7], 3)
    # 0.9 first, then the three-way tie at 0.5 by row: v0:0, v1:0 (v1:5 cut).
    assert ranked == {7: ["v0:5", "v0:0", "v1:0"]}
    ratings = {7: {"v0:0": 0.0, "v1:0": 1.0, "v0:5": 1.0}}
    # k=2: v0:5+ v0:0- -> (1/1) / 2 = 1/2.
    assert metrics.segment_map_at_k(ranked, ratings, 2) == pytest.approx(1 / 2)
    # k=3: v0:5+ v0:0- v1:0+ -> (1/1 + 2/3) / 2 = 5/6.
    assert metrics.segment_map_at_k(ranked, ratings, 3) == pytest.approx(5 / 6)


@pytest.mark.parametrize("seed", range(6))
def test_random_against_reference(seed):
    rng = np.random.default_rng(seed)
    num_segments, num_classes = int(rng.integers(5, 80)), int(rng.integers(1, 12))
    segment_ids = [f"v{i // 4}:{5 * (i % 4)}" for i in range(num_segments)]
    # Few distinct values so ties are everywhere.
    scores = rng.integers(0, 4, size=(num_segments, num_classes)).astype(np.float16)
    class_ids = rng.permutation(50)[:num_classes]
    ground_truth = {}
    for class_id in class_ids:
        rated = rng.random(num_segments) < 0.4
        ground_truth[int(class_id)] = {
            segment_ids[i]: float(rng.random() < 0.5) for i in np.flatnonzero(rated)}
    ground_truth[999] = {segment_ids[0]: 1.0}  # positive, never submitted
    for k in (1, 3, num_segments // 2 + 1, num_segments + 5):
        ranked = metrics.ranked_from_scores(segment_ids, scores, class_ids, k)
        assert ranked == reference_ranked(segment_ids, scores, class_ids, k)
        assert metrics.segment_map_at_k(ranked, ground_truth, k) == pytest.approx(
            reference_map(ranked, ground_truth, k))
        # Lists longer than k must be cut by the metric itself.
        full = metrics.ranked_from_scores(segment_ids, scores, class_ids,
                                          num_segments)
        assert metrics.segment_map_at_k(full, ground_truth, k) == pytest.approx(
            reference_map(ranked, ground_truth, k))


def test_scaled_k():
    assert metrics.scaled_k(2062258) == 100000
    assert metrics.scaled_k(2392) == 116  # 115.99
    assert metrics.scaled_k(1) == 1
    assert metrics.scaled_k(0) == 1


def test_gap_accumulated_in_uneven_blocks_equals_one_pass():
    rng = np.random.default_rng(5)
    predictions = rng.random((23, 9)).astype(np.float32)
    predictions[3, :4] = 0.5  # ties inside a video's top-k
    labels = rng.random((23, 9)) < 0.2
    gap = metrics.GapAccumulator(4)
    for start, stop in ((0, 1), (1, 10), (10, 10), (10, 23)):
        gap.add(predictions[start:stop], labels[start:stop])
    assert gap.result() == metrics.gap_at_k(predictions, labels, 4)
    assert gap.num_positives == labels.sum()
