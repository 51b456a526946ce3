"""WILLOW's Gated Deep Bag of Frames (Miech et al. 2017, GatedDBoF 4096)."""

import keras
from keras import ops

from yt8m_segments.layers import masked_pooling
from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm
from yt8m_segments.layers.frame_aggregator import FrameAggregator


@keras.saving.register_keras_serializable(package="yt8m_segments")
class GatedDBoF(FrameAggregator):
    """Soft cluster assignment, sum pooling gated by the max-pooled clusters.

    Reading of WILLOW's `GatedDBoF.forward`:
      a = softmax(BN(frames W_c))                    per frame, [B, T, K]
      s = sum of a over real frames                  [B, K]
      g = sigmoid(BN(l2(max of a over real frames) W_r W_g))   [B, K]
      v = l2(g * s) -> x W_h -> BN -> relu6          [B, hidden_size]
    The gates let clusters that fire strongly in some frame (max) rescale the
    clusters' total mass (sum). W_r (K -> gate_bottleneck, no bias or
    activation) and W_g factor the K x K gate matrix; WILLOW used the feature
    size (1024) as the bottleneck. The sum is taken as a mean: the final L2
    norm removes the frame count. WILLOW ran this per modality; here it runs
    on the concatenated frame, like `DBoF`. Context gating after the hidden
    layer is the separate `ContextGating` layer.

    Call: `frames` [B, T, D] float, `mask` [B, T] bool (None = all real).
    Output: [B, hidden_size]. Batch norm and pooling skip padded frames.
    """

    def __init__(self, cluster_size=4096, hidden_size=1024,
                 gate_bottleneck=1024, add_batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = cluster_size
        self.hidden_size = hidden_size
        self.gate_bottleneck = gate_bottleneck
        self.add_batch_norm = add_batch_norm
        self.input_norm = (keras.layers.BatchNormalization(name="input_bn")
                           if add_batch_norm else None)
        self.cluster = DenseBatchNorm(cluster_size, "softmax", add_batch_norm,
                                      name="cluster")
        self.gate_reduce = keras.layers.Dense(gate_bottleneck, use_bias=False,
                                              name="gate_reduce")
        self.gate = DenseBatchNorm(cluster_size, "sigmoid", add_batch_norm,
                                   name="gate")
        self.hidden = DenseBatchNorm(hidden_size, "relu6", add_batch_norm,
                                     name="hidden")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        batch = input_shape[0]
        if self.add_batch_norm:
            self.input_norm.build(input_shape)
        self.cluster.build(input_shape)
        self.gate_reduce.build((batch, self.cluster_size))
        self.gate.build((batch, self.gate_bottleneck))
        self.hidden.build((batch, self.cluster_size))

    def frame_features(self, frames, mask=None, training=None):
        """Per-frame part: soft assignments softmax(BN(BN(frames) W_c)) [B, T, K]."""
        if mask is None:
            mask = ops.ones(ops.shape(frames)[:2], dtype="bool")
        x = frames
        if self.add_batch_norm:
            x = self.input_norm(x, training=training, mask=mask)
        return self.cluster(x, mask=mask, training=training)

    def pool_frames(self, features, mask=None, training=None):
        """Gated mean of assignments [N, T, K] over real frames, hidden layer."""
        if mask is None:
            mask = ops.ones(ops.shape(features)[:2], dtype="bool")
        total = masked_pooling.masked_mean(features, mask)
        peak = ops.normalize(masked_pooling.masked_max(features, mask))
        gates = self.gate(self.gate_reduce(peak), training=training)
        return self.hidden(ops.normalize(gates * total), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_size)

    def get_config(self):
        return {
            **super().get_config(),
            "cluster_size": self.cluster_size,
            "hidden_size": self.hidden_size,
            "gate_bottleneck": self.gate_bottleneck,
            "add_batch_norm": self.add_batch_norm,
        }
