"""SoftDBoF: numpy reference."""

import numpy as np

from layer_inputs import frames, l2, lengths_mask, softmax
from yt8m_segments.layers.soft_dbof import SoftDBoF


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

