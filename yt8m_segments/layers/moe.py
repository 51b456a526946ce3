"""Mixture of logistic experts, the starter code's `MoeModel`."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# About the mean label frequency of the real vocabulary (~3 labels of 3862).
DEFAULT_INITIAL_PROBABILITY = 1e-3


def check_probability(probability):
    """`initial_probability` unchanged, or a ValueError: None or in (0, 1)."""
    if probability is not None and not 0.0 < probability < 1.0:
        raise ValueError(f"initial_probability must be in (0, 1), got "
                         f"{probability}")
    return probability


def prior_bias(probability):
    """A bias initializer giving sigmoid(bias) = `probability` (None: zeros).

    With zero biases every one of 3862 classes starts at p = 0.5 (a summed
    loss of ~2,700 per video) and the first hundreds of steps only walk the
    biases down to the label prior; starting at the prior, training reads
    the content from the first step.
    """
    if check_probability(probability) is None:
        return "zeros"
    return keras.initializers.Constant(
        float(np.log(probability) - np.log1p(-probability)))


@keras.saving.register_keras_serializable(package="yt8m_segments")
class L2Penalty(keras.regularizers.L2):
    """Keras' L2 penalty, l2 * sum(x^2), through TF's L2Loss op.

    Keras squares then sums: two passes and a temporary the kernel's size,
    two more for the gradient. On a 3862-class head's kernels (85M weights
    at MoE 5, hidden 2000) that was ~100 ms of a ~2.5 s step on 2 cores
    (bench/model_step.py); L2Loss is one pass, its gradient one multiply.
    """

    def __call__(self, x):
        x = tf.convert_to_tensor(x)
        return ops.cast(2.0 * self.l2, x.dtype) * tf.nn.l2_loss(x)


@keras.saving.register_keras_serializable(package="yt8m_segments")
class MoeClassifier(keras.layers.Layer):
    """Per class: p = sum_m softmax(gates)_m * sigmoid(expert_m).

    The softmax runs over `num_mixtures + 1` gates; the extra one belongs to a
    dummy expert that always predicts 0, so the mixture can say "no" cheaply.
    Input [B, H] -> probabilities [B, num_classes]. Column `c * (M + 1) + m`
    of the gate kernel (and `c * M + m` of the expert kernel) belongs to class
    c, as in the starter code's reshape. The expert biases start so that a
    class's probability is about `initial_probability` while the gates are
    near uniform (each expert at that times (M + 1) / M).
    """

    def __init__(self, num_classes, num_mixtures=2, l2_penalty=1e-8,
                 initial_probability=DEFAULT_INITIAL_PROBABILITY, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.num_mixtures = num_mixtures
        self.l2_penalty = l2_penalty
        self.initial_probability = check_probability(initial_probability)
        expert_probability = (None if initial_probability is None else min(
            0.5, initial_probability * (num_mixtures + 1) / num_mixtures))
        regularizer = L2Penalty(l2_penalty)
        self.gates = keras.layers.Dense(
            num_classes * (num_mixtures + 1), use_bias=False, name="gates",
            kernel_regularizer=regularizer)
        self.experts = keras.layers.Dense(
            num_classes * num_mixtures, name="experts",
            kernel_regularizer=regularizer,
            bias_initializer=prior_bias(expert_probability))

    def build(self, input_shape):
        self.gates.build(input_shape)
        self.experts.build(input_shape)

    def call(self, inputs):
        """Products in the compute dtype, the rest in float32 (mixed
        precision: float32 probabilities, precision.py)."""
        gates = ops.reshape(ops.cast(self.gates(inputs), "float32"),
                            (-1, self.num_classes, self.num_mixtures + 1))
        gates = ops.softmax(gates, axis=-1)[..., :self.num_mixtures]
        experts = ops.sigmoid(ops.reshape(
            ops.cast(self.experts(inputs), "float32"),
            (-1, self.num_classes, self.num_mixtures)))
        return ops.sum(gates * experts, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def class_subset_weights(self, positions):
        """Weights for the same layer restricted to the classes at `positions`."""
        positions = np.asarray(positions)
        (gate_kernel,) = self.gates.get_weights()
        expert_kernel, expert_bias = self.experts.get_weights()

        def take(array, width):
            per_class = array.reshape(array.shape[:-1] + (self.num_classes, width))
            kept = per_class[..., positions, :]
            return kept.reshape(array.shape[:-1] + (len(positions) * width,))

        m = self.num_mixtures
        return [take(gate_kernel, m + 1), take(expert_kernel, m),
                take(expert_bias, m)]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_mixtures": self.num_mixtures,
                "l2_penalty": self.l2_penalty,
                "initial_probability": self.initial_probability}
