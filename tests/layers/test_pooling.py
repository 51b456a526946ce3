"""FramePooling: numpy reference over the real frames."""

import numpy as np

from layer_inputs import frames, lengths_mask
from yt8m_segments.layers.masked_pooling import masked_max
from yt8m_segments.layers.pooling import FramePooling


def test_frame_pooling_matches_numpy():
    x = frames(2, 5)
    mask = lengths_mask([5, 2], 5)
    average = FramePooling("average")(x, mask=mask).numpy()
    peak = FramePooling("max")(x, mask=mask).numpy()
    for i, n in enumerate([5, 2]):
        np.testing.assert_allclose(average[i], x[i, :n].mean(axis=0),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(peak[i], x[i, :n].max(axis=0))


def test_max_without_padding_and_with_a_row_without_frames():
    """A batch without padding takes the plain max; a padded one skips the
    padding, and a row without a real frame pools to zeros."""
    x = frames(2, 5)
    np.testing.assert_array_equal(
        masked_max(x, np.ones((2, 5), bool)).numpy(), x.max(axis=1))
    noisy = x.copy()
    noisy[1] = 1.0e4
    out = masked_max(noisy, lengths_mask([5, 0], 5)).numpy()
    np.testing.assert_array_equal(out[0], x[0].max(axis=0))
    np.testing.assert_array_equal(out[1], 0.0)
