"""The numpy baselines against slower references and planted data."""

import numpy as np
import pytest

from yt8m_segments.evaluation import baselines
from yt8m_segments.data import records

RNG = np.random.default_rng(0)


def test_ridge_matches_the_augmented_least_squares_solution():
    """Centred ridge = least squares on [X; sqrt(l) I] with an unpenalised
    intercept; columns never positive predict 0."""
    x = RNG.normal(size=(50, 6))
    y = (RNG.random((50, 4)) < 0.3).astype(float)
    y[:, 3] = 0.0
    l2 = 3.0
    model = baselines.Ridge(l2).fit(x, y)
    xc, yc = x - x.mean(0), y[:, :3] - y[:, :3].mean(0)
    augmented = np.vstack([xc, np.sqrt(l2) * np.eye(6)])
    targets = np.vstack([yc, np.zeros((6, 3))])
    weights = np.linalg.lstsq(augmented, targets, rcond=None)[0]
    expected = (x - x.mean(0)) @ weights + y[:, :3].mean(0)
    scores = model.predict(x)
    np.testing.assert_allclose(scores[:, :3], expected, rtol=1e-4, atol=1e-5)
    assert not scores[:, 3].any()


def test_masked_mean_ignores_padding_and_dequantizes():
    frames = RNG.integers(0, 256, (2, 4, 3)).astype(np.uint8)
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    padded = frames.copy()
    padded[~mask] = 255
    got = baselines._masked_mean(padded, mask)
    expected = [records.dequantize(frames[0, :2].astype(np.float32)).mean(0),
                records.dequantize(frames[1].astype(np.float32)).mean(0)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_rated_logistic_learns_only_from_rated_pairs():
    """Class 0 is planted along feature 0; its unrated pairs carry wrong
    labels that must not matter. Held-out AUC near 1."""
    x = RNG.normal(size=(400, 5))
    truth = (x[:, 0] > 0).astype(float)
    rated = RNG.random(400) < 0.5
    labels = np.where(rated, truth, 1.0 - truth)[:, None]
    model = baselines.RatedLogistic().fit(x, labels, rated[:, None])
    test = RNG.normal(size=(200, 5))
    scores = model.predict(test)[:, 0]
    positive = test[:, 0] > 0
    auc = (scores[positive][:, None] > scores[~positive][None, :]).mean()
    assert auc > 0.97


def test_matched_filter_scores_are_projections():
    patterns = {7: np.array([1.0, 0.0, 2.0], np.float32),
                3: np.array([0.0, 1.0, 0.0], np.float32)}
    score = baselines.matched_filter(patterns, [3, 7])
    means = np.array([[1.0, 2.0, 3.0]], np.float32)
    np.testing.assert_allclose(score(means), [[2.0, 7.0]])


def test_empty_input_is_a_clear_error(tmp_path):
    path = str(tmp_path / "empty.tfrecord")
    records.write_records(path, [])
    from yt8m_segments.data.features import FeatureSpec
    with pytest.raises(ValueError, match="no video"):
        baselines.video_mean_frames([path], FeatureSpec())
