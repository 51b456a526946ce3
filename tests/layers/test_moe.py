"""MoeClassifier: harness and numpy reference."""

import keras
import numpy as np
import tensorflow as tf

from layer_harness import run_layer_test
from layer_inputs import RNG, sigmoid
from yt8m_segments import layers
from yt8m_segments.layers.moe import L2Penalty


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
                                mixed_output_dtype="float32",
                                expected_num_trainable_weights=3,
                                expected_num_non_trainable_weights=0)
    np.testing.assert_allclose(
        out.numpy(), moe_reference(x, *layer.gates.get_weights(),
                                   *layer.experts.get_weights(), 5, 3),
        rtol=1e-5, atol=1e-6)


def test_l2_penalty_is_keras_l2_in_value_and_gradient():
    """L2Penalty (one L2Loss op) adds what keras.regularizers.L2 adds, and
    the classifiers' penalties are l2 * sum(W^2) of their kernels."""
    kernel = tf.Variable(RNG.normal(size=(6, 10)).astype("float32"))
    values, grads = [], []
    for penalty in (L2Penalty(1e-3), keras.regularizers.L2(1e-3)):
        with tf.GradientTape() as tape:
            values.append(penalty(kernel))
        grads.append(tape.gradient(values[-1], kernel))
    np.testing.assert_allclose(values[0], values[1], rtol=1e-6)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
    np.testing.assert_allclose(grads[0], 2e-3 * kernel.numpy(), rtol=1e-6)
    x = RNG.normal(size=(2, 6)).astype("float32")
    for layer in (layers.MoeClassifier(5, num_mixtures=2, l2_penalty=1e-3),
                  layers.LogisticClassifier(5, l2_penalty=1e-3)):
        layer(x)
        kernels = [w.numpy() for w in layer.trainable_weights
                   if len(w.shape) == 2]
        np.testing.assert_allclose(
            float(sum(layer.losses)),
            1e-3 * sum(float((k.astype(np.float64) ** 2).sum())
                       for k in kernels), rtol=1e-5)
