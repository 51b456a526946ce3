"""One independent logistic regression per class."""

import keras
import numpy as np



@keras.saving.register_keras_serializable(package="yt8m_segments")
class LogisticClassifier(keras.layers.Layer):
    """sigmoid(x W + b): input [B, H] -> probabilities [B, num_classes]."""

    def __init__(self, num_classes, l2_penalty=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.l2_penalty = l2_penalty
        self.dense = keras.layers.Dense(
            num_classes, activation="sigmoid", name="logistic",
            kernel_regularizer=keras.regularizers.L2(l2_penalty))

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs):
        return self.dense(inputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def class_subset_weights(self, positions):
        """Weights for the same layer restricted to the classes at `positions`."""
        kernel, bias = self.dense.get_weights()
        positions = np.asarray(positions)
        return [kernel[:, positions], bias[positions]]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "l2_penalty": self.l2_penalty}

