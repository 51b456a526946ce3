"""The N logistic heads of a mixture of sub-models, mixed by its gate."""

import keras
import numpy as np
from keras import ops

from yt8m_segments.layers.moe import (
    DEFAULT_INITIAL_PROBABILITY, L2Penalty, prior_bias)


@keras.saving.register_keras_serializable(package="yt8m_segments")
class MixtureClassifier(keras.layers.Layer):
    """N logistic heads mixed by a gate.

    Call with the list [gate [B, N], h_0 [B, H_0], ..., h_{N-1}]; returns the
    tuple (probabilities sigmoid(z_e) [B, C], z_e [B, C], z_m [B, N, C]),
    z_m = h_m W_m + b_m and z_e = sum_m gate_m z_m. All inputs are per clip
    (no mask). One layer holds every head so that a mixture has one layer
    named "classifier" (fine-tuning slices it via `class_subset_weights`),
    and it returns the logits too because distillation trains on them
    (`models/mixture.py`).
    """

    def __init__(self, num_classes, num_experts, l2_penalty=1e-8,
                 initial_probability=DEFAULT_INITIAL_PROBABILITY, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.num_experts = num_experts
        self.l2_penalty = l2_penalty
        self.initial_probability = initial_probability
        self.heads = [
            keras.layers.Dense(num_classes, name=f"logistic_{i}",
                               kernel_regularizer=L2Penalty(l2_penalty),
                               bias_initializer=prior_bias(initial_probability))
            for i in range(num_experts)]

    def build(self, input_shape):
        if len(input_shape) != self.num_experts + 1:
            raise ValueError(
                f"MixtureClassifier takes [gate, h_0..h_{self.num_experts - 1}]"
                f", got {len(input_shape)} inputs")
        for head, shape in zip(self.heads, input_shape[1:]):
            head.build(shape)

    def call(self, inputs):
        gate, features = inputs[0], inputs[1:]
        # Logits in float32 (mixed precision: precision.py).
        expert_logits = ops.stack(
            [ops.cast(head(h), "float32")
             for head, h in zip(self.heads, features)], axis=1)
        logits = ops.einsum("bn,bnc->bc", ops.cast(gate, "float32"),
                            expert_logits)
        return ops.sigmoid(logits), logits, expert_logits

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return ((batch, self.num_classes), (batch, self.num_classes),
                (batch, self.num_experts, self.num_classes))

    def class_subset_weights(self, positions):
        """Every head restricted to the classes at `positions` (weight order)."""
        positions = np.asarray(positions)
        weights = []
        for head in self.heads:
            kernel, bias = head.get_weights()
            weights += [kernel[:, positions], bias[positions]]
        return weights

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_experts": self.num_experts,
                "l2_penalty": self.l2_penalty,
                "initial_probability": self.initial_probability}
