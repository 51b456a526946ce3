"""The gate of a mixture of sub-models (NeXtVLAD 2018, MOD 2019)."""

import keras
from keras import ops

from yt8m_segments.layers import masked_pooling
from yt8m_segments.layers.batch_norm import BatchNorm


@keras.saving.register_keras_serializable(package="yt8m_segments")
class MixtureGate(keras.layers.Layer):
    """a = softmax(FC(BN(mean of real frames))): [B, T, D] + mask -> [B, N].

    mask [B, T] (True: real frame; None: all real) keeps padded frames out of
    the mean, so the weights of the N sub-models do not depend on padding.
    The output is per clip, so no mask leaves the layer. It offers
    `frame_features` / `pool_frames` like the frame aggregators, so
    `models/windowed.py` can pool whole videos' frames into windows.
    """

    def __init__(self, num_experts, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = num_experts
        self.supports_masking = True
        self.norm = BatchNorm(name="bn")
        self.dense = keras.layers.Dense(num_experts, activation="softmax",
                                        name="dense")

    def build(self, input_shape):
        shape = (input_shape[0], input_shape[-1])
        self.norm.build(shape)
        self.dense.build(shape)

    def frame_features(self, frames, mask=None, training=None):
        """Nothing is per frame: the frames themselves."""
        return frames

    def pool_frames(self, features, mask=None, training=None):
        """Mean of real frames [N, T, D] -> BN -> FC -> softmax: [N, N_experts]."""
        if mask is None:
            mask = ops.ones(ops.shape(features)[:2], dtype="bool")
        mean = masked_pooling.masked_mean(features, mask)
        return self.dense(self.norm(mean, training=training))

    def call(self, frames, mask=None, training=None):
        return self.pool_frames(self.frame_features(frames, mask), mask,
                                training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_experts)

    def compute_mask(self, frames, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts}
