"""Context gating: reweight each feature by a gate computed from all."""

import keras

from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm


@keras.saving.register_keras_serializable(package="yt8m_segments")
class ContextGating(keras.layers.Layer):
    """y = x * gate(x), gate in (0, 1) per feature.

    reduction=None: WILLOW (Miech et al. 2017), gate = sigmoid(BN(x W)) with
      a full H x H matrix, placed after the hidden layer.
    reduction=r: squeeze-excitation as in NeXtVLAD (2018), gate =
      sigmoid(relu(BN(x W1)) W2) with W1 H -> H/r, W2 H/r -> H, no bias:
      the same idea at roughly 2/r of the weights.
    Without batch norm the first projection keeps a bias (WILLOW's code).

    The gate sizes come from the input, so the sublayers are made in build.
    Input [B, H] -> output [B, H].
    """

    def __init__(self, reduction=None, add_batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction
        self.add_batch_norm = add_batch_norm

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        size = input_shape[-1]
        if self.reduction is None:
            self.gates = [DenseBatchNorm(size, "sigmoid", self.add_batch_norm,
                                         name="gate")]
        else:
            self.gates = [
                DenseBatchNorm(size // self.reduction, "relu",
                               self.add_batch_norm, name="squeeze"),
                keras.layers.Dense(size, activation="sigmoid", use_bias=False,
                                   name="excite")]
        shape = input_shape
        for layer in self.gates:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, x, training=None):
        gate = x
        for layer in self.gates:
            gate = layer(gate, training=training)
        return x * gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "add_batch_norm": self.add_batch_norm,
        }
