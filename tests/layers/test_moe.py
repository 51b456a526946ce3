"""MoeClassifier: harness and numpy reference."""

import numpy as np

from layer_harness import run_layer_test
from layer_inputs import RNG, sigmoid
from yt8m_segments import layers


def moe_reference(x, gate_kernel, expert_kernel, expert_bias, num_classes,
                  num_mixtures):
    """Per class and example: softmax over M+1 gates, drop the dummy's share."""
    out = np.zeros((x.shape[0], num_classes))
    for c in range(num_classes):
        g = x @ gate_kernel[:, c * (num_mixtures + 1):(c + 1) * (num_mixtures + 1)]
        g = np.exp(g - g.max(axis=1, keepdims=True))
        g = g / g.sum(axis=1, keepdims=True)
        columns = slice(c * num_mixtures, (c + 1) * num_mixtures)
        e = sigmoid(x @ expert_kernel[:, columns] + expert_bias[columns])
        out[:, c] = (g[:, :num_mixtures] * e).sum(axis=1)
    return out


def test_moe_harness_and_numpy(tmp_path):
    x = RNG.normal(size=(4, 6)).astype("float32")
    layer, out = run_layer_test(layers.MoeClassifier,
                                {"num_classes": 5, "num_mixtures": 3,
                                 "l2_penalty": 1e-8},
                                x, (4, 5), tmp_path,
                                expected_num_trainable_weights=3,
                                expected_num_non_trainable_weights=0)
    np.testing.assert_allclose(
        out.numpy(), moe_reference(x, *layer.gates.get_weights(),
                                   *layer.experts.get_weights(), 5, 3),
        rtol=1e-5, atol=1e-6)

