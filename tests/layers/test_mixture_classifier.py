"""MixtureClassifier: harness, numpy reference, class subsets, saved name."""

import keras
import numpy as np
import pytest
from keras import ops

from layer_harness import run_layer_test
from layer_inputs import RNG, sigmoid, softmax
from yt8m_segments.layers.mixture_classifier import MixtureClassifier


@keras.saving.register_keras_serializable(package="yt8m_segments_tests")
class PackedMixtureClassifier(MixtureClassifier):
    """MixtureClassifier in the harness's one-tensor form: input
    [B, N + N * feature_size] is the gate then each head's features, output
    the probabilities [B, C]. Weights and config are MixtureClassifier's."""

    def __init__(self, feature_size, **kwargs):
        super().__init__(**kwargs)
        self.feature_size = feature_size

    def _split(self, x):
        n, h = self.num_experts, self.feature_size
        return [x[:, :n]] + [x[:, n + m * h:n + (m + 1) * h]
                             for m in range(n)]

    def build(self, input_shape):
        batch = input_shape[0]
        super().build([(batch, self.num_experts)]
                      + [(batch, self.feature_size)] * self.num_experts)

    def call(self, x):
        return super().call(self._split(x))[0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "feature_size": self.feature_size}


def mixture_inputs(batch=4, num_experts=3, size=6):
    gate = softmax(RNG.normal(size=(batch, num_experts))).astype("float32")
    features = [RNG.normal(size=(batch, size)).astype("float32")
                for _ in range(num_experts)]
    return gate, features


def test_mixture_classifier_harness(tmp_path):
    gate, features = mixture_inputs()
    packed = np.concatenate([gate, *features], axis=1)
    # A kernel and a bias per head.
    run_layer_test(PackedMixtureClassifier,
                   {"num_classes": 5, "num_experts": 3, "feature_size": 6,
                    "l2_penalty": 1e-8},
                   packed, (4, 5), tmp_path,
                   mixed_output_dtype="float32",
                   expected_num_trainable_weights=6,
                   expected_num_non_trainable_weights=0)


def test_mixture_classifier_matches_numpy():
    """z_m = h_m W_m + b_m, z_e = sum_m gate_m z_m, probabilities sigmoid(z_e)."""
    gate, features = mixture_inputs()
    layer = MixtureClassifier(num_classes=5, num_experts=3)
    probabilities, logits, expert_logits = (
        ops.convert_to_numpy(t) for t in layer([gate, *features]))
    expected = np.stack([h @ head.kernel.numpy() + head.bias.numpy()
                         for head, h in zip(layer.heads, features)], axis=1)
    np.testing.assert_allclose(expert_logits, expected, rtol=1e-5, atol=1e-6)
    mixed = (gate[:, :, None] * expected).sum(axis=1)
    np.testing.assert_allclose(logits, mixed, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probabilities, sigmoid(mixed), rtol=1e-5,
                               atol=1e-6)


def test_mixture_classifier_class_subset_weights_reproduce_those_columns():
    gate, features = mixture_inputs()
    full = MixtureClassifier(num_classes=9, num_experts=3)
    full_out = [ops.convert_to_numpy(t) for t in full([gate, *features])]
    positions = [7, 0, 4]
    subset = MixtureClassifier(num_classes=3, num_experts=3)
    subset.build([gate.shape] + [h.shape for h in features])
    subset.set_weights(full.class_subset_weights(positions))
    for got, want in zip(subset([gate, *features]), full_out):
        np.testing.assert_allclose(ops.convert_to_numpy(got),
                                   want[..., positions], rtol=1e-6)


def test_mixture_classifier_starts_at_the_prior():
    gate, features = mixture_inputs()
    layer = MixtureClassifier(7, 3, initial_probability=2e-3)
    probabilities = layer([gate, *(np.zeros_like(h) for h in features)])[0]
    np.testing.assert_allclose(ops.convert_to_numpy(probabilities), 2e-3,
                               rtol=1e-4)


def test_mixture_classifier_wants_a_gate_and_one_input_per_head():
    gate, features = mixture_inputs()
    with pytest.raises(ValueError, match="takes \\[gate, h_0..h_2\\]"):
        MixtureClassifier(5, 3)([gate, *features[:2]])


def test_mixture_classifier_keeps_its_registered_name():
    """Saved .keras files (written when it lived in models/mixture.py) name it
    by this registered name."""
    assert (keras.saving.get_registered_name(MixtureClassifier)
            == "yt8m_segments>MixtureClassifier")
