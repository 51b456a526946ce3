"""L2NormalizeFrames: harness, unit norms, zero frames stay zero, numpy."""

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


def test_matches_numpy_with_tiny_and_zero_frames():
    """x / max(||x||, epsilon) per frame, below epsilon too."""
    x = frames(3, 4, 6)
    x[0, 1] *= 1e-8
    x[2, 0] = 0.0
    expected = x / np.maximum(np.linalg.norm(x.astype(np.float64), axis=-1,
                                             keepdims=True), 1e-6)
    np.testing.assert_allclose(
        layers.L2NormalizeFrames(epsilon=1e-6)(x).numpy(), expected,
        rtol=1e-6, atol=1e-7)
