"""ContextGating (WILLOW and squeeze-excitation): harness, numpy references."""

import numpy as np
import pytest

from layer_harness import run_layer_test
from layer_inputs import RNG, sigmoid
from yt8m_segments.layers.context_gating import ContextGating


@pytest.mark.parametrize("kwargs,num_weights,num_statistics", [
    # One batch norm: moving mean, variance and update count.
    ({"reduction": None, "add_batch_norm": True}, 3, 3),
    ({"reduction": 4, "add_batch_norm": True}, 4, 3),
])
def test_context_gating_harness(kwargs, num_weights, num_statistics, tmp_path):
    x = RNG.normal(size=(4, 8)).astype("float32")
    run_layer_test(ContextGating, kwargs, x, (4, 8), tmp_path,
                   expected_num_trainable_weights=num_weights,
                   expected_num_non_trainable_weights=num_statistics)


def test_context_gating_matches_numpy_willow():
    x = RNG.normal(size=(4, 8)).astype("float32")
    layer = ContextGating(reduction=None, add_batch_norm=False)
    out = layer(x).numpy()
    kernel, bias = layer.gates[0].dense.get_weights()
    np.testing.assert_allclose(out, x * sigmoid(x @ kernel + bias),
                               rtol=1e-5, atol=1e-6)


def test_context_gating_matches_numpy_squeeze_excitation():
    """Batch norm in inference mode, with non-trivial moving statistics."""
    x = RNG.normal(size=(4, 8)).astype("float32")
    layer = ContextGating(reduction=4)
    layer.build(x.shape)
    squeeze, excite = layer.gates
    norm = squeeze.norm
    gamma, beta, mean, var = [RNG.normal(size=2).astype("float32")
                              for _ in range(4)]
    var = np.abs(var) + 0.5
    norm.set_weights([gamma, beta, mean, var, np.float32(0)])
    (w1,) = squeeze.dense.get_weights()
    (w2,) = excite.get_weights()
    h = (x @ w1 - mean) / np.sqrt(var + norm.epsilon) * gamma + beta
    expected = x * sigmoid(np.maximum(h, 0) @ w2)
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected,
                               rtol=1e-5, atol=1e-6)

