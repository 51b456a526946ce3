"""One modality of the concatenated frame, as its own graph node."""

import keras


@keras.saving.register_keras_serializable(package="yt8m_segments")
class FeatureSlice(keras.layers.Layer):
    """frames[..., start:stop]: one modality of the concatenated frame.

    Input [B, T, D] (or any [..., D]) -> output [..., stop - start]. The mask
    [B, T] passes through unchanged (slicing features moves no frame), so the
    per-modality aggregator after it still sees which frames are real.
    A layer rather than a tensor slice so that `models/windowed.py` can find
    it in the graph and run it frame-wise on whole videos.
    """

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start = start
        self.stop = stop
        self.supports_masking = True

    def call(self, frames):
        return frames[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.stop - self.start,)

    def get_config(self):
        return {**super().get_config(), "start": self.start,
                "stop": self.stop}
