"""BatchNorm: Keras batch norm whose moving statistics are debiased."""

import keras
import numpy as np

from layer_harness import run_layer_test
from layer_inputs import RNG
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
