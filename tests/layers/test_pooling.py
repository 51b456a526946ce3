"""FramePooling: numpy reference over the real frames."""

import numpy as np

from layer_inputs import frames, lengths_mask
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

