"""NeXtVLAD: group sizes (the rest runs across CASES in test_vlad_aggregators.py)."""

import pytest

from layer_inputs import frames
from yt8m_segments.layers.nextvlad import NeXtVLAD


def test_nextvlad_groups_must_divide_the_expanded_size():
    with pytest.raises(ValueError, match="divisible by groups"):
        NeXtVLAD(cluster_size=4, groups=3, expansion=2)(frames(1, 2, 4))

