"""The base of the orderless frame aggregators: per-frame work, then pooling."""

import keras


class FrameAggregator(keras.layers.Layer):
    """frames [B, T, D] + mask [B, T] bool (None = all real) -> [B, H].

    Subclasses split their work in two so inference can run the first half
    once per video and pool overlapping context windows from it
    (models/windowed.py): `frame_features(frames, mask, training)` ->
    [B, T, F], everything done frame by frame (the mask only keeps padding out
    of training batch statistics), and `pool_frames(features, mask, training)`
    -> [B, H], masked pooling and what follows. The frame mask is consumed:
    the output has no frame axis.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, frames, mask=None, training=None):
        return self.pool_frames(
            self.frame_features(frames, mask, training=training), mask,
            training=training)

    def compute_mask(self, frames, mask=None):
        return None
