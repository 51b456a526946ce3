"""What LogisticClassifier and MoeClassifier share: class subsets, the prior."""

import numpy as np
import pytest

from layer_inputs import RNG
from yt8m_segments import layers


@pytest.mark.parametrize("layer_cls,kwargs", [
    (layers.LogisticClassifier, {}),
    (layers.MoeClassifier, {"num_mixtures": 2}),
])
def test_class_subset_weights_reproduce_those_columns(layer_cls, kwargs):
    x = RNG.normal(size=(4, 6)).astype("float32")
    full = layer_cls(num_classes=9, **kwargs)
    full_out = full(x).numpy()
    positions = [7, 0, 4]
    subset = layer_cls(num_classes=3, **kwargs)
    subset.build(x.shape)
    subset.set_weights(full.class_subset_weights(positions))
    np.testing.assert_allclose(subset(x).numpy(), full_out[:, positions],
                               rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda p: layers.LogisticClassifier(7, initial_probability=p),
    lambda p: layers.MoeClassifier(7, num_mixtures=3, initial_probability=p),
], ids=["logistic", "moe"])
def test_classifier_starts_at_the_prior(make):
    """Zero biases start 3862 classes at p = 0.5 (MoE: 1/3): the first
    hundreds of steps only walk them down. The classifiers start at the
    given prior instead (exactly, where the features carry no signal)."""
    probabilities = make(2e-3)(np.zeros((4, 5), "float32")).numpy()
    np.testing.assert_allclose(probabilities, 2e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="initial_probability"):
        make(1.5)

