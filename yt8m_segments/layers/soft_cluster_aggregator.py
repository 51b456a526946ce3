"""The front end WILLOW's SoftDBoF and GatedDBoF share: soft cluster assignment."""

from keras import ops

from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm
from yt8m_segments.layers.frame_aggregator import FrameAggregator
from yt8m_segments.layers.batch_norm import BatchNorm


class SoftClusterAggregator(FrameAggregator):
    """a = softmax(BN(BN(frames) W_c)) per frame [B, T, K], then a subclass's
    `pool_frames` and the hidden layer x W_h -> BN -> relu6 [B, hidden_size].

    Subclasses create their own pooling layers and extend `build` with them.
    """

    def __init__(self, cluster_size, hidden_size, add_batch_norm=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = cluster_size
        self.hidden_size = hidden_size
        self.add_batch_norm = add_batch_norm
        self.input_norm = (BatchNorm(name="input_bn")
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

    def frame_features(self, frames, mask=None, training=None):
        """Per-frame part: soft assignments softmax(BN(BN(frames) W_c)) [B, T, K]."""
        if mask is None:
            mask = ops.ones(ops.shape(frames)[:2], dtype="bool")
        x = frames
        if self.add_batch_norm:
            x = self.input_norm(x, training=training, mask=mask)
        return self.cluster(x, mask=mask, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_size)

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "hidden_size": self.hidden_size,
                "add_batch_norm": self.add_batch_norm}
