"""Model-zoo layers: harness, clip lengths, padding, order, gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from layer_harness import assert_padding_changes_nothing, run_layer_test
from yt8m_segments.layers.context_gating import ContextGating
from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm
from yt8m_segments.layers.gated_dbof import GatedDBoF
from yt8m_segments.layers.pooling import FramePooling
from yt8m_segments.layers.recurrent import RecurrentAggregator
from yt8m_segments.layers.resnet_like import ResNetLike
from yt8m_segments.layers.soft_dbof import SoftDBoF

RNG = np.random.default_rng(1)
DIM = 16


def frames(batch=3, time=7, dim=DIM):
    return RNG.normal(size=(batch, time, dim)).astype("float32")


def lengths_mask(lengths, time):
    return np.arange(time)[None, :] < np.asarray(lengths)[:, None]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def l2(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# (class, kwargs, output size, trainable weights, non-trainable weights: 3
# statistics per batch norm) for the frame aggregators.
AGGREGATORS = {
    "gated_dbof": (GatedDBoF, {"cluster_size": 12, "hidden_size": 8,
                               "gate_bottleneck": 6, "add_batch_norm": True},
                   8, 12, 12),
    "soft_dbof": (SoftDBoF, {"cluster_size": 12, "hidden_size": 8,
                             "pooling": "both", "add_batch_norm": True},
                  8, 8, 9),
    "soft_dbof_average": (SoftDBoF, {"cluster_size": 12, "hidden_size": 8,
                                     "pooling": "average"}, 8, 8, 9),
    "gru": (RecurrentAggregator, {"cell": "gru", "units": 8,
                                  "num_layers": 2}, 8, 6, 0),
    "lstm": (RecurrentAggregator, {"cell": "lstm", "units": 8,
                                   "num_layers": 1}, 8, 3, 0),
    "average": (FramePooling, {"method": "average"}, DIM, 0, 0),
    "max": (FramePooling, {"method": "max"}, DIM, 0, 0),
}
ORDERLESS = ["gated_dbof", "soft_dbof", "soft_dbof_average", "average", "max"]


def make(name):
    layer_cls, kwargs, *_ = AGGREGATORS[name]
    return layer_cls(**kwargs)


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


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_output_is_the_state_after_the_last_real_frame(cell):
    layer = RecurrentAggregator(cell=cell, units=8, num_layers=2)
    x = frames(3, 6)
    lengths = [6, 2, 4]
    padded = layer(x, mask=lengths_mask(lengths, 6)).numpy()
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(padded[i], layer(x[i:i + 1, :n])[0],
                                   rtol=1e-5, atol=1e-5)


def test_recurrent_depends_on_frame_order():
    layer = RecurrentAggregator(cell="gru", units=8, num_layers=1)
    x = frames(2, 6)
    assert not np.allclose(layer(x).numpy(), layer(x[:, ::-1]).numpy(),
                           atol=1e-4)


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


def test_frame_pooling_matches_numpy():
    x = frames(2, 5)
    mask = lengths_mask([5, 2], 5)
    average = FramePooling("average")(x, mask=mask).numpy()
    peak = FramePooling("max")(x, mask=mask).numpy()
    for i, n in enumerate([5, 2]):
        np.testing.assert_allclose(average[i], x[i, :n].mean(axis=0),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(peak[i], x[i, :n].max(axis=0))


def test_soft_dbof_matches_numpy_without_batch_norm():
    layer = SoftDBoF(cluster_size=6, hidden_size=4, pooling="both",
                     add_batch_norm=False)
    x = frames(2, 5, 3)
    out = layer(x, mask=lengths_mask([5, 2], 5)).numpy()
    w_c, b_c = layer.cluster.dense.get_weights()
    w_h, b_h = layer.hidden.dense.get_weights()
    for i, n in enumerate([5, 2]):
        a = softmax(x[i, :n] @ w_c + b_c)
        pooled = np.concatenate([l2(a.sum(axis=0)), l2(a.max(axis=0))])
        np.testing.assert_allclose(out[i], np.clip(pooled @ w_h + b_h, 0, 6),
                                   rtol=1e-5, atol=1e-5)


def test_gated_dbof_matches_numpy_without_batch_norm():
    layer = GatedDBoF(cluster_size=6, hidden_size=4, gate_bottleneck=3,
                      add_batch_norm=False)
    x = frames(2, 5, 3)
    out = layer(x, mask=lengths_mask([5, 2], 5)).numpy()
    w_c, b_c = layer.cluster.dense.get_weights()
    (w_r,) = layer.gate_reduce.get_weights()
    w_g, b_g = layer.gate.dense.get_weights()
    w_h, b_h = layer.hidden.dense.get_weights()
    for i, n in enumerate([5, 2]):
        a = softmax(x[i, :n] @ w_c + b_c)
        gates = sigmoid(l2(a.max(axis=0)) @ w_r @ w_g + b_g)
        pooled = l2(gates * a.sum(axis=0))
        np.testing.assert_allclose(out[i], np.clip(pooled @ w_h + b_h, 0, 6),
                                   rtol=1e-5, atol=1e-5)


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


RESNET_SIZES = [12, 4]


@pytest.mark.parametrize("variant,input_size,num_weights,num_statistics", [
    # Stages of 3 + blocks of 6 weights: 2 branches of (3 + 6), trunk 3 + 12;
    # each of the 11 batch norms keeps 3 statistics.
    ("plain", 16, 33, 33),
    ("imbalance", 16, 33, 33),
    ("concat", 32, 33, 33),
])
def test_resnet_like_harness(variant, input_size, num_weights, num_statistics,
                             tmp_path):
    x = RNG.normal(size=(4, input_size)).astype("float32")
    run_layer_test(ResNetLike,
                   {"feature_sizes": RESNET_SIZES, "variant": variant,
                    "branch_size": 8, "hidden_size": 6, "branch_blocks": 1,
                    "trunk_blocks": 2, "dropout": 0.1},
                   x, (4, 6), tmp_path,
                   expected_num_trainable_weights=num_weights,
                   expected_num_non_trainable_weights=num_statistics)


def test_resnet_like_variant_widths():
    def widths(variant):
        layer = ResNetLike(RESNET_SIZES, variant=variant, branch_size=8)
        layer.build((None, layer.input_size()))
        return [tuple(branch.stem.dense.kernel.shape)
                for branch in layer.branches]
    assert widths("plain") == [(12, 8), (4, 8)]
    assert widths("imbalance") == [(12, 8), (4, 3)]
    assert widths("concat") == [(24, 8), (8, 8)]
    # Defaults: rgb 1024 + audio 128; imbalance keeps audio at 128 channels.
    assert ResNetLike(variant="imbalance").branch_widths() == [1024, 128]


def test_resnet_like_concat_reads_means_then_maxes_per_modality():
    """Each max block reaches only its own modality's branch."""
    layer = ResNetLike(RESNET_SIZES, variant="concat", branch_size=8,
                       hidden_size=6)
    x = RNG.normal(size=(2, 32)).astype("float32")
    layer(x)
    branch_inputs = [part.numpy() for part in layer.split(x)]
    np.testing.assert_array_equal(
        branch_inputs[0], np.concatenate([x[:, 0:12], x[:, 16:28]], axis=1))
    np.testing.assert_array_equal(
        branch_inputs[1], np.concatenate([x[:, 12:16], x[:, 28:32]], axis=1))


def test_resnet_like_rejects_a_mismatched_input():
    with pytest.raises(ValueError, match="expects 32 features, got 16"):
        ResNetLike(RESNET_SIZES, variant="concat")(
            np.zeros((2, 16), "float32"))


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
