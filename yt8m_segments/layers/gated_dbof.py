"""WILLOW's Gated Deep Bag of Frames (Miech et al. 2017, GatedDBoF 4096)."""

import keras
from keras import ops

from yt8m_segments.layers import masked_pooling
from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm
from yt8m_segments.layers.soft_cluster_aggregator import SoftClusterAggregator


@keras.saving.register_keras_serializable(package="yt8m_segments")
class GatedDBoF(SoftClusterAggregator):
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
        super().__init__(cluster_size, hidden_size, add_batch_norm, **kwargs)
        self.gate_bottleneck = gate_bottleneck
        self.gate_reduce = keras.layers.Dense(gate_bottleneck, use_bias=False,
                                              name="gate_reduce")
        self.gate = DenseBatchNorm(cluster_size, "sigmoid", add_batch_norm,
                                   name="gate")

    def build(self, input_shape):
        super().build(input_shape)
        batch = input_shape[0]
        self.gate_reduce.build((batch, self.cluster_size))
        self.gate.build((batch, self.gate_bottleneck))
        self.hidden.build((batch, self.cluster_size))

    def pool_frames(self, features, mask=None, training=None):
        """Gated mean of assignments [N, T, K] over real frames, hidden layer."""
        if mask is None:
            mask = ops.ones(ops.shape(features)[:2], dtype="bool")
        total = masked_pooling.masked_mean(features, mask)
        peak = ops.normalize(masked_pooling.masked_max(features, mask))
        gates = self.gate(self.gate_reduce(peak), training=training)
        return self.hidden(ops.normalize(gates * total), training=training)

    def get_config(self):
        return {**super().get_config(),
                "gate_bottleneck": self.gate_bottleneck}
