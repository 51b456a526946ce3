"""Per-frame L2 normalisation, as the starter code applies before every model."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="yt8m_segments")
class L2NormalizeFrames(keras.layers.Layer):
    """Scale each frame's feature vector to unit L2 norm.

    Input [B, T, D] -> output [B, T, D]. Zero (padded) frames stay zero.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, frames):
        norm = ops.sqrt(ops.sum(ops.square(frames), axis=-1, keepdims=True))
        return frames / ops.maximum(norm, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
