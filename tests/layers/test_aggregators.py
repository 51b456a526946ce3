"""Tests run across the frame aggregators of AGGREGATORS (and a few more
layers): harness, clip lengths, padding, order, clear errors, gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_harness import assert_padding_changes_nothing, run_layer_test
from layer_inputs import (AGGREGATORS, ORDERLESS, RESNET_SIZES, RNG, frames,
                          lengths_mask, make)
from yt8m_segments.layers.context_gating import ContextGating
from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm
from yt8m_segments.layers.pooling import FramePooling
from yt8m_segments.layers.recurrent import RecurrentAggregator
from yt8m_segments.layers.resnet_like import ResNetLike
from yt8m_segments.layers.soft_dbof import SoftDBoF


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_aggregator_harness(name, tmp_path):
    layer_cls, kwargs, size, num_weights, num_statistics = AGGREGATORS[name]
    run_layer_test(layer_cls, kwargs, frames(), (3, size), tmp_path,
                   mask=lengths_mask([7, 3, 5], 7),
                   expected_num_trainable_weights=num_weights,
                   expected_num_non_trainable_weights=num_statistics)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_segment_window_and_video_lengths(name):
    """5-frame segments, 15-frame context windows and 300-frame videos."""
    layer = make(name)
    size = AGGREGATORS[name][2]
    for time, lengths in [(5, [5, 5]), (15, [15, 9]), (300, [300, 120])]:
        out = layer(frames(2, time), mask=lengths_mask(lengths, time))
        assert tuple(out.shape) == (2, size)
        assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_padding_changes_nothing(name):
    layer = make(name)
    x = frames(3, 6)
    mask = lengths_mask([6, 2, 4], 6)
    assert_padding_changes_nothing(layer, x, mask, fill=100.0)


@pytest.mark.parametrize("name", ORDERLESS)
def test_orderless_aggregators_ignore_frame_order(name):
    layer = make(name)
    x = frames(2, 6)
    mask = lengths_mask([6, 4], 6)
    # Shuffle the real frames of each row among themselves.
    shuffled = x.copy()
    shuffled[0] = x[0, [3, 0, 5, 1, 4, 2]]
    shuffled[1, :4] = x[1, [2, 0, 3, 1]]
    for training in (False, True):
        np.testing.assert_allclose(
            layer(x, mask=mask, training=training).numpy(),
            layer(shuffled, mask=mask, training=training).numpy(),
            rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer_cls,kwargs,choice", [
    (ResNetLike, {"variant": "wide"}, "variant 'wide'"),
    (RecurrentAggregator, {"cell": "rnn"}, "cell 'rnn'"),
    (SoftDBoF, {"pooling": "median"}, "pooling 'median'"),
    (FramePooling, {"method": "median"}, "pooling 'median'"),
])
def test_unknown_choices_are_clear_errors(layer_cls, kwargs, choice):
    with pytest.raises(ValueError, match=f"unknown {choice}"):
        layer_cls(**kwargs)


def gradient_cases():
    x = frames(3, 5)
    mask = lengths_mask([5, 3, 1], 5)
    for name in sorted(AGGREGATORS):
        if AGGREGATORS[name][3]:
            yield pytest.param(make(name), x, mask, id=name)
    hidden = RNG.normal(size=(4, 8)).astype("float32")
    for reduction in (None, 4):
        yield pytest.param(ContextGating(reduction), hidden, None,
                           id=f"context_gating_{reduction}")
    yield pytest.param(DenseBatchNorm(5, "relu6"), x, mask,
                       id="dense_batch_norm")
    for variant, size in [("plain", 16), ("imbalance", 16), ("concat", 32)]:
        yield pytest.param(
            ResNetLike(RESNET_SIZES, variant=variant, branch_size=8,
                       hidden_size=6),
            RNG.normal(size=(4, size)).astype("float32"), None,
            id=f"resnet_like_{variant}")


@pytest.mark.parametrize("layer,x,mask", gradient_cases())
def test_gradients_reach_every_trainable_weight(layer, x, mask):
    call_kwargs = {} if mask is None else {"mask": mask}
    layer(x, **call_kwargs)
    # A fixed random projection, not a plain sum: a sum of softmax outputs or
    # of batch-normalised features is constant and would hide the gradient.
    probe = RNG.normal(size=layer.compute_output_shape(x.shape)[1:])
    # training=False: in training mode the next batch norm's mean subtraction
    # cancels an earlier batch norm's beta exactly, which says nothing about
    # the wiring.
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(layer(x, training=False, **call_kwargs) * probe)
    gradients = tape.gradient(loss, layer.trainable_variables)
    assert layer.trainable_variables
    for variable, gradient in zip(layer.trainable_variables, gradients):
        assert gradient is not None, variable.path
        assert np.abs(gradient.numpy()).sum() > 0, variable.path


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

