"""MixtureGate: harness, numpy reference, padding, saved name."""

import keras
import numpy as np

from layer_harness import assert_padding_changes_nothing, run_layer_test
from layer_inputs import RNG, frames, lengths_mask, softmax
from yt8m_segments.layers.mixture_gate import MixtureGate


def test_mixture_gate_harness(tmp_path):
    # Batch norm gamma, beta + dense kernel, bias; the batch norm's moving
    # mean, variance and update count.
    run_layer_test(MixtureGate, {"num_experts": 3}, frames(), (3, 3),
                   tmp_path, mask=lengths_mask([7, 3, 5], 7),
                   expected_num_trainable_weights=4,
                   expected_num_non_trainable_weights=3)


def test_mixture_gate_matches_numpy():
    """softmax(FC(BN(mean of the real frames))), batch norm in inference mode
    with non-trivial moving statistics."""
    x = frames(2, 5, 6)
    lengths = [5, 2]
    mask = lengths_mask(lengths, 5)
    layer = MixtureGate(3)
    layer(x, mask=mask)
    gamma, beta, mean = (RNG.normal(size=6).astype("float32")
                         for _ in range(3))
    var = RNG.uniform(0.5, 2, 6).astype("float32")
    layer.norm.set_weights([gamma, beta, mean, var, np.float32(0)])
    kernel, bias = layer.dense.get_weights()
    out = layer(x, mask=mask, training=False).numpy()
    for i, n in enumerate(lengths):
        h = ((x[i, :n].mean(axis=0) - mean) / np.sqrt(var + layer.norm.epsilon)
             * gamma + beta)
        np.testing.assert_allclose(out[i], softmax(h @ kernel + bias),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


def test_mixture_gate_padding_changes_nothing():
    layer = MixtureGate(3)
    assert_padding_changes_nothing(layer, frames(3, 6),
                                   lengths_mask([6, 2, 4], 6), fill=100.0)


def test_mixture_gate_keeps_its_registered_name():
    """Saved .keras files (written when it lived in models/mixture.py) name it
    by this registered name."""
    assert (keras.saving.get_registered_name(MixtureGate)
            == "yt8m_segments>MixtureGate")
