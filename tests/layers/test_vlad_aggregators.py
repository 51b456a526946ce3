"""Tests run across the VLAD family of CASES (NetVLAD and its variants,
NeXtVLAD, NetFV): harness, masks, invariances, numpy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_harness import assert_padding_changes_nothing, run_layer_test
from layer_inputs import (CASES, D, RNG, frames, l2, lengths_mask, make,
                          sigmoid, softmax)


@pytest.mark.parametrize("name", CASES)
def test_harness_on_segments(name, tmp_path):
    layer_cls, kwargs, size, num_weights, num_statistics = CASES[name]
    run_layer_test(layer_cls, kwargs, frames(3, 5), (3, size), tmp_path,
                   mask=lengths_mask([5, 3, 1], 5),
                   expected_num_trainable_weights=num_weights,
                   expected_num_non_trainable_weights=num_statistics)


@pytest.mark.parametrize("name", CASES)
def test_context_windows_and_whole_videos_through_a_model(name):
    """One functional model with an unknown frame count takes any length."""
    inputs = keras.Input((None, D))
    mask = keras.Input((None,), dtype="bool")
    model = keras.Model([inputs, mask], make(name)(inputs, mask=mask))
    for time in (15, 300):
        out = model([frames(2, time), lengths_mask([time, time // 3], time)])
        assert tuple(out.shape) == (2, CASES[name][2])
        assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("name", CASES)
def test_padding_frames_change_nothing(name):
    layer = make(name)
    x = frames(4, 6)
    mask = lengths_mask([6, 2, 0, 4], 6)
    assert_padding_changes_nothing(layer, x, mask, fill=1.0e4)


@pytest.mark.parametrize("name", CASES)
def test_rows_without_frames_stay_out_of_batch_statistics(name):
    """Padded batch rows (docs/traps.md) must not move the real rows' outputs."""
    layer = make(name)
    x = frames(3, 5)
    mask = lengths_mask([5, 3, 2], 5)
    padded_x = np.concatenate([x, frames(2, 5)])
    padded_mask = np.concatenate([mask, np.zeros((2, 5), bool)])
    np.testing.assert_allclose(
        layer(padded_x, mask=padded_mask, training=True).numpy()[:3],
        layer(x, mask=mask, training=True).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_invariant_to_frame_order(name):
    layer = make(name)
    x = frames(3, 7)
    mask = lengths_mask([7, 4, 2], 7)
    order = RNG.permutation(7)
    for training in (False, True):
        np.testing.assert_allclose(
            layer(x, mask=mask, training=training).numpy(),
            layer(x[:, order], mask=mask[:, order],
                  training=training).numpy(),
            rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_gradients_reach_every_trainable_weight(name):
    layer = make(name)
    x = frames(3, 5)
    mask = lengths_mask([5, 2, 0], 5)
    layer(x, mask=mask)
    projection = RNG.normal(size=(3, CASES[name][2])).astype("float32")
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(layer(x, mask=mask, training=True) * projection)
    gradients = tape.gradient(loss, layer.trainable_variables)
    for variable, gradient in zip(layer.trainable_variables, gradients):
        assert gradient is not None, variable.path
        assert np.isfinite(gradient.numpy()).all(), variable.path
        assert np.abs(gradient.numpy()).sum() > 0, variable.path


# ---- numpy references (training=False: batch norm uses moving statistics) --

def randomise(batch_norm):
    """Known, non-trivial gamma, beta and moving statistics."""
    size = batch_norm.gamma.shape[0]
    for variable, value in zip(
            (batch_norm.gamma, batch_norm.beta, batch_norm.moving_mean,
             batch_norm.moving_variance),
            (RNG.uniform(0.5, 1.5, size), RNG.normal(size=size),
             RNG.normal(size=size), RNG.uniform(0.5, 2, size))):
        variable.assign(value)


def bn(x, batch_norm):
    gamma, beta, mean, var = (v.numpy() for v in (
        batch_norm.gamma, batch_norm.beta, batch_norm.moving_mean,
        batch_norm.moving_variance))
    return (x - mean) / np.sqrt(var + batch_norm.epsilon) * gamma + beta


def assignments(layer, x):
    """NetVLAD/NetFV front end on one example's real frames [n, D]."""
    if layer.add_batch_norm:
        x = bn(x, layer.input_norm)
        logits = bn(x @ layer.assignment.kernel.numpy(), layer.assignment_norm)
    else:
        logits = x @ layer.assignment.kernel.numpy() + layer.assignment.bias.numpy()
    return x, softmax(logits)


def netvlad_reference(layer, x):
    x, a = assignments(layer, x)
    vlad = np.stack([(a[:, k:k + 1] * (x if layer.light else
                                       x - layer.centroids.numpy()[k])).sum(0)
                     for k in range(layer.cluster_size)])
    if layer.non_local:
        theta, phi, g, out = (w.numpy() for w in (
            layer.nonlocal_theta, layer.nonlocal_phi, layer.nonlocal_g,
            layer.nonlocal_out))
        scores = softmax((vlad @ theta) @ (vlad @ phi).T
                         / np.sqrt(theta.shape[1]))
        vlad = vlad + scores @ (vlad @ g) @ out
    return l2(l2(vlad).ravel())


def nextvlad_reference(layer, x):
    groups, size = layer.groups, layer.group_size
    x = x @ layer.expansion_kernel.numpy() + layer.expansion_bias.numpy()
    attention = sigmoid(x @ layer.attention.kernel.numpy()
                        + layer.attention.bias.numpy())
    logits = bn(x @ layer.assignment.kernel.numpy(), layer.assignment_norm)
    a = softmax(logits.reshape(len(x), groups, -1)) * attention[..., None]
    parts = x.reshape(len(x), groups, size)
    centroids = layer.centroids.numpy()
    vlad = np.zeros((layer.cluster_size, size))
    for t in range(len(x)):
        for g in range(groups):
            for k in range(layer.cluster_size):
                vlad[k] += a[t, g, k] * (parts[t, g] - centroids[k])
    return bn(l2(vlad).ravel(), layer.output_norm)


def netfv_reference(layer, x):
    x, a = assignments(layer, x)
    sigma = layer.scales.numpy() ** 2 + 1e-6
    first, second = [], []
    for k in range(layer.cluster_size):
        r = (x - layer.centroids.numpy()[k]) / sigma[k]
        first.append((a[:, k:k + 1] * r).sum(0))
        second.append((a[:, k:k + 1] * (r ** 2 - 1)).sum(0))
    return np.concatenate([l2(l2(np.stack(first)).ravel()),
                           l2(np.stack(second).ravel())])


REFERENCES = {"netvlad": netvlad_reference, "light": netvlad_reference,
              "non_local": netvlad_reference,
              "light_non_local_no_bn": netvlad_reference,
              "nextvlad": nextvlad_reference, "netfv": netfv_reference}


@pytest.mark.parametrize("name", REFERENCES)
def test_matches_numpy_on_real_frames(name):
    layer = make(name)
    x = frames(3, 5)
    lengths = [5, 3, 1]
    mask = lengths_mask(lengths, 5)
    layer(x, mask=mask)
    for attribute in ("input_norm", "assignment_norm", "output_norm"):
        if getattr(layer, attribute, None) is not None:
            randomise(getattr(layer, attribute))
    x[~mask] = 50.0
    out = layer(x, mask=mask, training=False).numpy()
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(out[i], REFERENCES[name](layer, x[i, :n]),
                                   rtol=1e-4, atol=1e-5)

