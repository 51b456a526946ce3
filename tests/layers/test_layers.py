"""Each layer through the shared harness, plus numpy references and invariants."""

import keras
import numpy as np
import pytest

from layer_harness import assert_padding_changes_nothing, run_layer_test
from yt8m_segments import layers

RNG = np.random.default_rng(0)


def frames(batch=3, time=7, dim=12):
    return RNG.normal(size=(batch, time, dim)).astype("float32")


def lengths_mask(lengths, time):
    return np.arange(time)[None, :] < np.asarray(lengths)[:, None]


def relu6(x):
    return np.clip(x, 0, 6)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_dbof_harness(tmp_path):
    mask = lengths_mask([7, 3, 5], 7)
    run_layer_test(layers.DBoF,
                   {"cluster_size": 16, "hidden_size": 8, "pooling": "max",
                    "add_batch_norm": True},
                   frames(), (3, 8), tmp_path, mask=mask,
                   expected_num_trainable_weights=8,
                   expected_num_non_trainable_weights=9)


def test_dbof_matches_numpy_without_batch_norm():
    layer = layers.DBoF(cluster_size=6, hidden_size=4, pooling="max",
                        add_batch_norm=False)
    x = frames(2, 5, 3)
    mask = lengths_mask([5, 2], 5)
    out = layer(x, mask=mask).numpy()
    w_c, b_c, w_h, b_h = [w.numpy() for w in (
        layer.cluster.kernel, layer.cluster.bias, layer.hidden.kernel,
        layer.hidden.bias)]
    for i, n in enumerate([5, 2]):
        activation = relu6(x[i, :n] @ w_c + b_c).max(axis=0)
        np.testing.assert_allclose(out[i], relu6(activation @ w_h + b_h),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["max", "average"])
def test_dbof_padding_changes_nothing(pooling):
    layer = layers.DBoF(cluster_size=16, hidden_size=8, pooling=pooling)
    x = frames(3, 6, 12)
    mask = lengths_mask([6, 2, 4], 6)
    assert_padding_changes_nothing(layer, x, mask, fill=100.0)


def test_dbof_is_invariant_to_frame_order():
    layer = layers.DBoF(cluster_size=16, hidden_size=8)
    x = frames(2, 6, 12)
    np.testing.assert_allclose(layer(x).numpy(), layer(x[:, ::-1]).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_unknown_pooling_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown pooling 'median'"):
        layers.DBoF(pooling="median")


def test_logistic_harness_and_numpy(tmp_path):
    x = RNG.normal(size=(4, 6)).astype("float32")
    layer, out = run_layer_test(layers.LogisticClassifier,
                                {"num_classes": 5, "l2_penalty": 1e-8}, x,
                                (4, 5), tmp_path,
                                expected_num_trainable_weights=2,
                                expected_num_non_trainable_weights=0)
    kernel, bias = layer.dense.get_weights()
    np.testing.assert_allclose(out.numpy(), sigmoid(x @ kernel + bias),
                               rtol=1e-5, atol=1e-6)


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


@pytest.mark.parametrize("layer_cls,kwargs", [
    (layers.LogisticClassifier, {}),
    (layers.MoeClassifier, {"num_mixtures": 2}),
])
def test_class_subset_weights_reproduce_those_columns(layer_cls, kwargs):
    x = RNG.normal(size=(4, 6)).astype("float32")
    full = layer_cls(num_classes=9, **kwargs)
    full_out = full(x).numpy()
    positions = [7, 0, 4]
    subset = layer_cls(num_classes=3, **kwargs)
    subset.build(x.shape)
    subset.set_weights(full.class_subset_weights(positions))
    np.testing.assert_allclose(subset(x).numpy(), full_out[:, positions],
                               rtol=1e-6)


def test_l2_normalize_frames(tmp_path):
    x = frames(2, 4, 5)
    x[1, 3] = 0.0
    _, out = run_layer_test(layers.L2NormalizeFrames, {"epsilon": 1e-6}, x,
                            (2, 4, 5), tmp_path)
    norms = np.linalg.norm(out.numpy(), axis=-1)
    np.testing.assert_allclose(norms[0], 1.0, rtol=1e-5)
    assert norms[1, 3] == 0.0


def test_gradients_reach_every_dbof_moe_weight():
    import tensorflow as tf
    from yt8m_segments.models.registry import ModelConfig, build_model
    model = build_model(ModelConfig("DBoF", "MoE", 4, 12,
                                    {"dbof_cluster_size": 8,
                                     "dbof_hidden_size": 6}))
    feed = {"frames": frames(3, 5, 12), "mask": lengths_mask([5, 3, 1], 5)}
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(model(feed, training=True))
    gradients = tape.gradient(loss, model.trainable_variables)
    for variable, gradient in zip(model.trainable_variables, gradients):
        assert gradient is not None, variable.path
        assert np.abs(gradient.numpy()).sum() > 0, variable.path


@pytest.mark.parametrize("make", [
    lambda p: layers.LogisticClassifier(7, initial_probability=p),
    lambda p: layers.MoeClassifier(7, num_mixtures=3, initial_probability=p),
], ids=["logistic", "moe"])
def test_classifier_starts_at_the_prior(make):
    """Zero biases start 3862 classes at p = 0.5 (MoE: 1/3): the first
    hundreds of steps only walk them down. The classifiers start at the
    given prior instead (exactly, where the features carry no signal)."""
    probabilities = make(2e-3)(np.zeros((4, 5), "float32")).numpy()
    np.testing.assert_allclose(probabilities, 2e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="initial_probability"):
        make(1.5)
