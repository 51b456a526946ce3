"""Average or max of the real frames: the simplest aggregator, no weights."""

import keras

from yt8m_segments.layers import masked_pooling
from yt8m_segments.layers.frame_aggregator import FrameAggregator


@keras.saving.register_keras_serializable(package="yt8m_segments")
class FramePooling(FrameAggregator):
    """Pool frames over time, skipping padded frames.

    The average of a whole video's frames stands in for the video-level
    features (mean_rgb, mean_audio), so this also feeds `ResNetLike`.

    Call: `frames` [B, T, D] float, `mask` [B, T] bool (None = all real).
    Output: [B, D]; a row without real frames pools to zeros.
    """

    def __init__(self, method="average", **kwargs):
        super().__init__(**kwargs)
        self.method = method
        self._pool = masked_pooling.get(method)

    def frame_features(self, frames, mask=None, training=None):
        """Nothing is per frame: the frames themselves."""
        return frames

    def pool_frames(self, features, mask=None, training=None):
        if mask is None:
            mask = keras.ops.ones(keras.ops.shape(features)[:2], dtype="bool")
        return self._pool(features, mask)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "method": self.method}
