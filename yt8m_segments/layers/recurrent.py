"""Stacked GRU or LSTM over the frames; its last state describes the clip."""

import keras

CELLS = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}


@keras.saving.register_keras_serializable(package="yt8m_segments")
class RecurrentAggregator(keras.layers.Layer):
    """Run `num_layers` recurrent layers; output the top layer's last state.

    The mask goes to every recurrent layer, which carries its state through
    padded steps, so the output is the state after the last real frame
    (starter code: dynamic_rnn with sequence_length). Frame order matters.

    Call: `frames` [B, T, D] float, `mask` [B, T] bool (None = all real).
    Output: [B, units] (an LSTM's output h, not its cell state c); a row
    without real frames gives zeros.
    """

    def __init__(self, cell="gru", units=1024, num_layers=2, **kwargs):
        super().__init__(**kwargs)
        if cell not in CELLS:
            raise ValueError(
                f"unknown cell '{cell}'; choose one of {sorted(CELLS)}")
        self.cell = cell
        self.units = units
        self.num_layers = num_layers
        self.supports_masking = True
        self.rnns = [
            CELLS[cell](units, return_sequences=i < num_layers - 1,
                        name=f"{cell}_{i}")
            for i in range(num_layers)]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for rnn in self.rnns:
            rnn.build(shape)
            shape = shape[:-1] + (self.units,)

    def call(self, frames, mask=None, training=None):
        x = frames
        for rnn in self.rnns:
            x = rnn(x, mask=mask, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def compute_mask(self, frames, mask=None):
        return None

    def get_config(self):
        return {
            **super().get_config(),
            "cell": self.cell,
            "units": self.units,
            "num_layers": self.num_layers,
        }
