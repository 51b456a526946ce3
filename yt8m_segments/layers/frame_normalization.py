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
        """frames / max(||frames||, epsilon), as a product with rsqrt: a
        division per value is the slower op, forward and backward."""
        square_sum = ops.sum(ops.square(frames), axis=-1, keepdims=True)
        return frames * ops.rsqrt(ops.maximum(square_sum, self.epsilon ** 2))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
