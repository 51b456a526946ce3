"""L2NormalizeFrames: harness, unit norms, zero frames stay zero."""

import numpy as np

from layer_harness import run_layer_test
from layer_inputs import frames
from yt8m_segments import layers


def test_l2_normalize_frames(tmp_path):
    x = frames(2, 4, 5)
    x[1, 3] = 0.0
    _, out = run_layer_test(layers.L2NormalizeFrames, {"epsilon": 1e-6}, x,
                            (2, 4, 5), tmp_path)
    norms = np.linalg.norm(out.numpy(), axis=-1)
    np.testing.assert_allclose(norms[0], 1.0, rtol=1e-5)
    assert norms[1, 3] == 0.0

