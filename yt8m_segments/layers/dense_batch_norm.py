"""Dense -> batch norm -> activation, the unit DBoF-style layers repeat."""

import keras
from yt8m_segments.layers.batch_norm import BatchNorm


@keras.saving.register_keras_serializable(package="yt8m_segments")
class DenseBatchNorm(keras.layers.Layer):
    """x W -> BN -> activation; batch norm stands in for the bias.

    Without batch norm the dense layer keeps its bias, as in WILLOW's code.
    Works per frame or per example: `x` [..., D] -> [..., units]. `mask`
    ([B, T] bool for [B, T, D] input) keeps padded frames out of the batch
    statistics; the output keeps that mask.
    """

    def __init__(self, units, activation="linear", add_batch_norm=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.add_batch_norm = add_batch_norm
        self.supports_masking = True
        self.dense = keras.layers.Dense(units, use_bias=not add_batch_norm,
                                        name="dense")
        self.norm = (BatchNorm(name="bn")
                     if add_batch_norm else None)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.dense.build(input_shape)
        if self.add_batch_norm:
            self.norm.build(input_shape[:-1] + (self.units,))

    def call(self, x, mask=None, training=None):
        x = self.dense(x)
        if self.add_batch_norm:
            x = self.norm(x, training=training, mask=mask)
        return self.activation(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "add_batch_norm": self.add_batch_norm,
        }
