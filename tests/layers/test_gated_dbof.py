"""GatedDBoF: numpy reference."""

import numpy as np

from layer_inputs import frames, l2, lengths_mask, sigmoid, softmax
from yt8m_segments.layers.gated_dbof import GatedDBoF


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

