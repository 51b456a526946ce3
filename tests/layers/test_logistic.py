"""LogisticClassifier: harness and numpy reference."""

import numpy as np

from layer_harness import run_layer_test
from layer_inputs import RNG, sigmoid
from yt8m_segments import layers


def test_logistic_harness_and_numpy(tmp_path):
    x = RNG.normal(size=(4, 6)).astype("float32")
    layer, out = run_layer_test(layers.LogisticClassifier,
                                {"num_classes": 5, "l2_penalty": 1e-8}, x,
                                (4, 5), tmp_path,
                                mixed_output_dtype="float32",
                                expected_num_trainable_weights=2,
                                expected_num_non_trainable_weights=0)
    kernel, bias = layer.dense.get_weights()
    np.testing.assert_allclose(out.numpy(), sigmoid(x @ kernel + bias),
                               rtol=1e-5, atol=1e-6)

