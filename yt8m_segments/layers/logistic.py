"""One independent logistic regression per class."""

import keras
import numpy as np
from keras import ops

from yt8m_segments.layers.moe import (
    DEFAULT_INITIAL_PROBABILITY, L2Penalty, prior_bias)


@keras.saving.register_keras_serializable(package="yt8m_segments")
class LogisticClassifier(keras.layers.Layer):
    """sigmoid(x W + b): input [B, H] -> probabilities [B, num_classes].

    The biases start at logit(`initial_probability`) (see `prior_bias`).
    """

    def __init__(self, num_classes, l2_penalty=1e-8,
                 initial_probability=DEFAULT_INITIAL_PROBABILITY, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.l2_penalty = l2_penalty
        self.initial_probability = initial_probability
        self.dense = keras.layers.Dense(
            num_classes, name="logistic",
            kernel_regularizer=L2Penalty(l2_penalty),
            bias_initializer=prior_bias(initial_probability))

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs):
        """The sigmoid in float32 (mixed precision: precision.py)."""
        return ops.sigmoid(ops.cast(self.dense(inputs), "float32"))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def class_subset_weights(self, positions):
        """Weights for the same layer restricted to the classes at `positions`."""
        kernel, bias = self.dense.get_weights()
        positions = np.asarray(positions)
        return [kernel[:, positions], bias[positions]]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "l2_penalty": self.l2_penalty,
                "initial_probability": self.initial_probability}

