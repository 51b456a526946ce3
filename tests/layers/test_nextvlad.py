"""NeXtVLAD: group sizes (the rest runs across CASES in test_vlad_aggregators.py)."""

import numpy as np
import pytest

from layer_inputs import frames, lengths_mask
from yt8m_segments.layers.nextvlad import NeXtVLAD


def test_nextvlad_groups_must_divide_the_expanded_size():
    with pytest.raises(ValueError, match="divisible by groups"):
        NeXtVLAD(cluster_size=4, groups=3, expansion=2)(frames(1, 2, 4))


@pytest.mark.parametrize("training", [False, True])
def test_call_is_pool_frames_of_frame_features(training):
    """call() skips the concatenation frame_features returns for windowed
    inference, not a number: both give the same outputs, padding included."""
    layer = NeXtVLAD(cluster_size=4, groups=4, expansion=2)
    x = frames(3, 6)
    mask = lengths_mask([6, 2, 4], 6)
    np.testing.assert_allclose(
        layer(x, mask=mask, training=training).numpy(),
        layer.pool_frames(layer.frame_features(x, mask, training=training),
                          mask, training=training).numpy(),
        rtol=1e-5, atol=1e-6)
