"""The weighted loss against a loop written in numpy."""

import numpy as np

from yt8m_segments.training import losses


def reference(labels, probabilities, weights):
    total = 0.0
    for i in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            p = min(max(probabilities[i, c], 1e-7), 1 - 1e-7)
            y = labels[i, c]
            total += weights[i, c] * -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return total / labels.shape[0]


def test_weighted_cross_entropy_matches_numpy():
    rng = np.random.default_rng(3)
    labels = (rng.random((4, 6)) > 0.5).astype("float32")
    probabilities = rng.random((4, 6)).astype("float32")
    probabilities[0, 0] = 0.0  # clipped, not infinite
    weights = rng.random((4, 6)).astype("float32")
    weights[1] = 0.0
    got = float(losses.weighted_binary_crossentropy(labels, probabilities,
                                                    weights))
    assert np.isclose(got, reference(labels, probabilities, weights), rtol=1e-5)


def test_unweighted_is_all_ones_and_zero_weight_drops_a_pair():
    labels = np.array([[1.0, 0.0]], "float32")
    probabilities = np.array([[0.2, 0.9]], "float32")
    unweighted = float(losses.weighted_binary_crossentropy(labels,
                                                           probabilities))
    assert np.isclose(unweighted, -np.log(0.2) - np.log(0.1), rtol=1e-5)
    only_first = float(losses.weighted_binary_crossentropy(
        labels, probabilities, np.array([[1.0, 0.0]], "float32")))
    assert np.isclose(only_first, -np.log(0.2), rtol=1e-5)
