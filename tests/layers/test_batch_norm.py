"""BatchNorm: Keras batch norm whose moving statistics are debiased."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_harness import run_layer_test
from layer_inputs import RNG
from yt8m_segments.layers import batch_norm
from yt8m_segments.layers.batch_norm import BatchNorm


def small_frames(batch=8, frames=6, size=4, std=0.03):
    """Frames like L2-normalised 1152-d ones: per-dimension std ~0.03."""
    return (0.1 + std * RNG.standard_normal((batch, frames, size))).astype(
        "float32")


def test_layer_harness(tmp_path):
    mask = np.ones((2, 6), bool)
    mask[1, 4:] = False
    run_layer_test(BatchNorm, {"momentum": 0.9}, small_frames(2), (2, 6, 4),
                   tmp_path, mask=mask, expected_num_trainable_weights=2,
                   expected_num_non_trainable_weights=3)


def test_padding_stays_out_of_statistics():
    """Per-frame layer: the real frames' outputs and the moving statistics
    ignore what the padded frames hold."""
    frames = small_frames(3)
    mask = np.ones((3, 6), bool)
    mask[0, 2:] = False
    noisy = frames.copy()
    noisy[~mask] = 100.0
    clean_layer, noisy_layer = BatchNorm(), BatchNorm()
    clean = clean_layer(frames, mask=mask, training=True).numpy()
    padded = noisy_layer(noisy, mask=mask, training=True).numpy()
    np.testing.assert_allclose(clean[mask], padded[mask], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clean_layer.moving_variance.numpy(),
                               noisy_layer.moving_variance.numpy(), rtol=1e-5)


def test_first_update_takes_the_batch_statistics():
    frames = small_frames()
    layer = BatchNorm(momentum=0.99)
    layer(frames, training=True)
    flat = frames.reshape(-1, frames.shape[-1])
    np.testing.assert_allclose(layer.moving_mean.numpy(), flat.mean(0),
                               rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), flat.var(0),
                               rtol=1e-4)
    assert float(layer.num_updates.numpy()) == 1.0


def test_moving_variance_is_right_after_few_steps():
    """Keras' own layer still holds 0.99^20 = 82% of its initial variance 1
    after 20 updates, 800x the true 1e-3: inference then shrinks every
    feature ~28x. The debiased average is the true variance already."""
    batches = [small_frames(std=0.03) for _ in range(20)]
    ours, keras_bn = BatchNorm(momentum=0.99), keras.layers.BatchNormalization(
        momentum=0.99)
    for batch in batches:
        ours(batch, training=True)
        keras_bn(batch, training=True)
    true_variance = np.concatenate(batches).reshape(-1, 4).var(0)
    ratio = ours.moving_variance.numpy() / true_variance
    np.testing.assert_allclose(ratio, 1.0, atol=0.15)
    assert (keras_bn.moving_variance.numpy() / true_variance).min() > 100
    # Inference then matches training-mode outputs on the same data.
    test = batches[-1]
    np.testing.assert_allclose(ours(test, training=False).numpy().std(),
                               ours(test, training=True).numpy().std(),
                               rtol=0.15)


def test_momentum_tends_to_the_configured_one():
    """Long runs are plain exponential averages: after many updates a new
    batch moves the mean by (1 - momentum) of the difference."""
    layer = BatchNorm(momentum=0.9)
    zeros = np.zeros((4, 3), "float32")
    for _ in range(200):
        layer(zeros, training=True)
    layer(np.ones((4, 3), "float32"), training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1, rtol=1e-3)


def test_synchronized_masked_statistics_match_a_numpy_reference():
    """`synchronized` (distribution.synchronize_batch_norm) on one replica:
    the masked batch mean and variance of the real frames, as numpy computes
    them, and the same outputs and moving statistics as unsynchronized.
    (Two replicas against one device: tests/training/test_training.py.)"""
    frames = small_frames(4)
    mask = RNG.random((4, 6)) > 0.3
    real = frames[mask]
    layers = []
    for synchronized in (False, True):
        layer = BatchNorm(momentum=0.9)
        layer.build(frames.shape)
        layer.synchronized = synchronized
        mean, variance = layer._moments(keras.ops.convert_to_tensor(frames),
                                        keras.ops.convert_to_tensor(mask))
        np.testing.assert_allclose(mean, real.mean(0), rtol=1e-5)
        np.testing.assert_allclose(variance, real.var(0), rtol=1e-3)
        layers.append((layer, layer(frames, training=True, mask=mask)))
    (plain, plain_out), (synced, synced_out) = layers
    np.testing.assert_allclose(synced_out, plain_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(synced.moving_variance, plain.moving_variance,
                               rtol=1e-4)


def numpy_training_batch_norm(x, mask, gamma, beta, cotangent, epsilon=1e-3):
    """Training-mode batch norm over the real frames, slowly, in float64:
    (outputs, batch mean, batch variance, gradient for x given the output
    cotangent on real frames, for gamma, for beta)."""
    x, cotangent = x.astype(np.float64), cotangent.astype(np.float64)
    real = np.ones(x.shape[:-1], bool) if mask is None else mask
    rows, g = x[real], cotangent[real]
    mean, variance = rows.mean(0), rows.var(0)
    sigma = np.sqrt(variance + epsilon)
    normalized = (rows - mean) / sigma
    grad_x = np.zeros_like(x)
    grad_x[real] = gamma / sigma * (g - g.mean(0)
                                    - normalized * (g * normalized).mean(0))
    outputs = (x - mean) / sigma * gamma + beta
    return (outputs, mean, variance, grad_x, (g * normalized).sum(0),
            g.sum(0))


@pytest.mark.parametrize("padding", ["no mask", "all real", "padded"])
@pytest.mark.parametrize("fused_min_size", [0, batch_norm.FUSED_MIN_SIZE])
def test_training_call_matches_a_numpy_reference(padding, fused_min_size,
                                                 monkeypatch):
    """The fused path (every frame real, from `fused_min_size` values), the
    op-by-op one and the masked one (padding): outputs, the first update's
    moving statistics and the gradients, with the cotangent on real frames
    only, as numpy computes them."""
    monkeypatch.setattr(batch_norm, "FUSED_MIN_SIZE", fused_min_size)
    frames = small_frames(5, 6, 4) * RNG.uniform(0.5, 3.0, 4).astype("float32")
    mask = {"no mask": None, "all real": np.ones((5, 6), bool),
            "padded": RNG.random((5, 6)) > 0.3}[padding]
    real = np.ones((5, 6), bool) if mask is None else mask
    cotangent = (RNG.standard_normal(frames.shape)
                 * real[..., None]).astype("float32")
    layer = BatchNorm()
    layer.build(frames.shape)
    gamma, beta = RNG.uniform(0.5, 2, 4), RNG.normal(size=4)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    x = tf.constant(frames)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x, mask=mask, training=True)
        loss = tf.reduce_sum(outputs * cotangent)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    expected = numpy_training_batch_norm(frames, mask, gamma, beta, cotangent)
    np.testing.assert_allclose(outputs.numpy()[real], expected[0][real],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.numpy(), expected[1],
                               rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), expected[2],
                               rtol=1e-4)
    for got, want in zip(grads, expected[3:]):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3,
                                   atol=1e-3)


def test_large_batches_without_padding_take_the_fused_op(monkeypatch):
    """Sampled frames (no padding) are the common training batch: from
    FUSED_MIN_SIZE values their statistics come from TF's fused batch norm,
    not op by op. (Eager: tf.cond runs only the branch taken.)"""
    fused_calls = []
    fused = BatchNorm._normalize_fused

    def counted(layer, inputs):
        fused_calls.append(inputs.shape)
        return fused(layer, inputs)
    monkeypatch.setattr(BatchNorm, "_normalize_fused", counted)
    rows = batch_norm.FUSED_MIN_SIZE // 128
    large = RNG.standard_normal((rows // 8, 8, 128)).astype("float32")
    padded = np.ones(large.shape[:2], bool)
    padded[0, -1] = False
    layer = BatchNorm()
    for x, mask in ((large, None), (large, np.ones(large.shape[:2], bool)),
                    (large, padded), (large[:2], None)):
        layer(x, mask=mask, training=True)
    assert fused_calls == [large.shape, large.shape]
