"""Deep Bag of Frames, the starter code's `DbofModel` aggregator."""

import keras
from keras import ops

from yt8m_segments.layers import masked_pooling
from yt8m_segments.layers.frame_aggregator import FrameAggregator
from yt8m_segments.layers.batch_norm import BatchNorm


@keras.saving.register_keras_serializable(package="yt8m_segments")
class DBoF(FrameAggregator):
    """Project frames onto clusters, pool over real frames, then a hidden layer.

    frames -> [BN] -> x W_cluster -> BN -> relu6 -> pool over frames
    -> x W_hidden -> BN -> relu6. Batch norm runs with the frame mask so padded
    frames never enter the batch statistics, and pooling skips them too.

    Call: `frames` [B, T, D] float, `mask` [B, T] bool (None = all real).
    Output: [B, hidden_size].
    """

    def __init__(self, cluster_size=8192, hidden_size=1024, pooling="max",
                 add_batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = cluster_size
        self.hidden_size = hidden_size
        self.pooling = pooling
        self.add_batch_norm = add_batch_norm
        self._pool = masked_pooling.get(pooling)
        self.input_norm = (BatchNorm(name="input_bn")
                           if add_batch_norm else None)
        self.cluster = keras.layers.Dense(
            cluster_size, use_bias=not add_batch_norm, name="cluster")
        self.cluster_norm = (BatchNorm(name="cluster_bn")
                             if add_batch_norm else None)
        self.hidden = keras.layers.Dense(
            hidden_size, use_bias=not add_batch_norm, name="hidden")
        self.hidden_norm = (BatchNorm(name="hidden_bn")
                            if add_batch_norm else None)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if self.add_batch_norm:
            self.input_norm.build(input_shape)
            self.cluster_norm.build(input_shape[:-1] + (self.cluster_size,))
            self.hidden_norm.build((input_shape[0], self.hidden_size))
        self.cluster.build(input_shape)
        self.hidden.build((input_shape[0], self.cluster_size))

    def frame_features(self, frames, mask=None, training=None):
        """Per-frame part: [B, T, D] -> relu6(BN(BN(frames) W_cluster)) [B, T, K].

        `mask` only keeps padded frames out of the training batch statistics;
        at inference every step here is per frame.
        """
        if mask is None:
            mask = ops.ones(ops.shape(frames)[:2], dtype="bool")
        x = frames
        if self.add_batch_norm:
            x = self.input_norm(x, training=training, mask=mask)
        x = self.cluster(x)
        if self.add_batch_norm:
            x = self.cluster_norm(x, training=training, mask=mask)
        return ops.relu6(x)

    def pool_frames(self, features, mask=None, training=None):
        """Pool `frame_features` [N, T, K] over real frames, then the hidden layer."""
        if mask is None:
            mask = ops.ones(ops.shape(features)[:2], dtype="bool")
        x = self._pool(features, mask)
        x = self.hidden(x)
        if self.add_batch_norm:
            x = self.hidden_norm(x, training=training)
        return ops.relu6(x)

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
