"""WILLOW's Soft Deep Bag of Frames (Miech et al. 2017, SoftDBoF 8000)."""

import keras
from keras import ops

from yt8m_segments.layers import masked_pooling
from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm
from yt8m_segments.layers.frame_aggregator import FrameAggregator

POOLINGS = {"average": ("average",), "max": ("max",),
            "both": ("average", "max")}


@keras.saving.register_keras_serializable(package="yt8m_segments")
class SoftDBoF(FrameAggregator):
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
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}'; choose one of "
                             f"{sorted(POOLINGS)}")
        self.cluster_size = cluster_size
        self.hidden_size = hidden_size
        self.pooling = pooling
        self.add_batch_norm = add_batch_norm
        self._pools = [masked_pooling.get(name) for name in POOLINGS[pooling]]
        self.input_norm = (keras.layers.BatchNormalization(name="input_bn")
                           if add_batch_norm else None)
        self.cluster = DenseBatchNorm(cluster_size, "softmax", add_batch_norm,
                                      name="cluster")
        self.hidden = DenseBatchNorm(hidden_size, "relu6", add_batch_norm,
                                     name="hidden")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if self.add_batch_norm:
            self.input_norm.build(input_shape)
        self.cluster.build(input_shape)
        self.hidden.build(
            (input_shape[0], self.cluster_size * len(self._pools)))

    def frame_features(self, frames, mask=None, training=None):
        """Per-frame part: soft assignments softmax(BN(BN(frames) W_c)) [B, T, K]."""
        if mask is None:
            mask = ops.ones(ops.shape(frames)[:2], dtype="bool")
        x = frames
        if self.add_batch_norm:
            x = self.input_norm(x, training=training, mask=mask)
        return self.cluster(x, mask=mask, training=training)

    def pool_frames(self, features, mask=None, training=None):
        """Pool assignments [N, T, K] over real frames, then the hidden layer."""
        if mask is None:
            mask = ops.ones(ops.shape(features)[:2], dtype="bool")
        pooled = [ops.normalize(pool(features, mask)) for pool in self._pools]
        return self.hidden(ops.concatenate(pooled, axis=-1), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_size)

    def get_config(self):
        return {
            **super().get_config(),
            "cluster_size": self.cluster_size,
            "hidden_size": self.hidden_size,
            "pooling": self.pooling,
            "add_batch_norm": self.add_batch_norm,
        }
