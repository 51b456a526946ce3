"""DBoF: harness, numpy reference, padding, frame order, bad pooling."""

import numpy as np
import pytest

from layer_harness import assert_padding_changes_nothing, run_layer_test
from layer_inputs import frames, lengths_mask, relu6
from yt8m_segments import layers


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

