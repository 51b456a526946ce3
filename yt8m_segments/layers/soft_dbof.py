"""WILLOW's Soft Deep Bag of Frames (Miech et al. 2017, SoftDBoF 8000)."""

import keras
from keras import ops

from yt8m_segments.layers import masked_pooling
from yt8m_segments.layers.soft_cluster_aggregator import SoftClusterAggregator

POOLINGS = {"average": ("average",), "max": ("max",),
            "both": ("average", "max")}


@keras.saving.register_keras_serializable(package="yt8m_segments")
class SoftDBoF(SoftClusterAggregator):
    """DBoF with a softmax (soft) assignment of each frame over the clusters.

    Reading of WILLOW's `SoftDBoF.forward`:
      a = softmax(BN(frames W_c))                  per frame, [B, T, K]
      pooled = l2(sum of a) [, l2(max of a)]       [B, K] or [B, 2K]
      -> x W_h -> BN -> relu6                      [B, hidden_size]
    A softmax makes each frame spend one unit of mass over the clusters, so
    the pooled vector is a soft histogram rather than DBoF's relu6 peaks.
    `pooling`: "average" (WILLOW's sum pooling; the L2 norm makes sum and
    mean equal), "max", or "both" (WILLOW's `softdbof_maxpool`: concatenated).
    Runs on the concatenated frame, like `DBoF`; WILLOW ran it per modality.

    Call: `frames` [B, T, D] float, `mask` [B, T] bool (None = all real).
    Output: [B, hidden_size]. Batch norm and pooling skip padded frames.
    """

    def __init__(self, cluster_size=8000, hidden_size=1024, pooling="average",
                 add_batch_norm=True, **kwargs):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}'; choose one of "
                             f"{sorted(POOLINGS)}")
        super().__init__(cluster_size, hidden_size, add_batch_norm, **kwargs)
        self.pooling = pooling
        self._pools = [masked_pooling.get(name) for name in POOLINGS[pooling]]

    def build(self, input_shape):
        super().build(input_shape)
        self.hidden.build(
            (input_shape[0], self.cluster_size * len(self._pools)))

    def pool_frames(self, features, mask=None, training=None):
        """Pool assignments [N, T, K] over real frames, then the hidden layer."""
        if mask is None:
            mask = ops.ones(ops.shape(features)[:2], dtype="bool")
        pooled = [ops.normalize(pool(features, mask)) for pool in self._pools]
        return self.hidden(ops.concatenate(pooled, axis=-1), training=training)

    def get_config(self):
        return {**super().get_config(), "pooling": self.pooling}
