"""RecurrentAggregator: the last real frame's state, order matters."""

import numpy as np
import pytest

from layer_inputs import frames, lengths_mask
from yt8m_segments.layers.recurrent import RecurrentAggregator


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_output_is_the_state_after_the_last_real_frame(cell):
    layer = RecurrentAggregator(cell=cell, units=8, num_layers=2)
    x = frames(3, 6)
    lengths = [6, 2, 4]
    padded = layer(x, mask=lengths_mask(lengths, 6)).numpy()
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(padded[i], layer(x[i:i + 1, :n])[0],
                                   rtol=1e-5, atol=1e-5)


def test_recurrent_depends_on_frame_order():
    layer = RecurrentAggregator(cell="gru", units=8, num_layers=1)
    x = frames(2, 6)
    assert not np.allclose(layer(x).numpy(), layer(x[:, ::-1]).numpy(),
                           atol=1e-4)

