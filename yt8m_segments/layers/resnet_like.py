"""ResNetLike, the video-level model of the 2019 2nd-place segments team."""

import keras
from keras import ops

from yt8m_segments.layers.dense_batch_norm import DenseBatchNorm

VARIANTS = ("plain", "imbalance", "concat")


class _ResidualBlock(keras.layers.Layer):
    """leaky_relu(x + BN(W2 dropout(leaky_relu(BN(W1 x))))), width kept."""

    def __init__(self, units, dropout, **kwargs):
        super().__init__(**kwargs)
        self.inner = DenseBatchNorm(units, "leaky_relu", name="inner")
        self.dropout = keras.layers.Dropout(dropout)
        self.outer = DenseBatchNorm(units, "linear", name="outer")

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer.build(input_shape)

    def call(self, x, training=None):
        h = self.inner(x, training=training)
        h = self.outer(self.dropout(h, training=training), training=training)
        return keras.activations.leaky_relu(x + h)


class _Stage(keras.layers.Layer):
    """Linear-BN-LeakyReLU-Dropout to `units`, then `num_blocks` residuals."""

    def __init__(self, units, num_blocks, dropout, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.stem = DenseBatchNorm(units, "leaky_relu", name="stem")
        self.dropout = keras.layers.Dropout(dropout)
        self.blocks = [_ResidualBlock(units, dropout, name=f"block_{i}")
                       for i in range(num_blocks)]

    def build(self, input_shape):
        self.stem.build(input_shape)
        for block in self.blocks:
            block.build((input_shape[0], self.units))

    def call(self, x, training=None):
        x = self.dropout(self.stem(x, training=training), training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return x


@keras.saving.register_keras_serializable(package="yt8m_segments")
class ResNetLike(keras.layers.Layer):
    """Per-modality residual MLP branches, concatenated, then a residual trunk.

    Input: one tensor [B, F] holding the modalities side by side in
    `feature_sizes` order (default mean_rgb 1024 then mean_audio 128, the
    order of the project's frames, so `FramePooling("average")` of frames
    feeds it). A single tensor keeps the aggregator interface (one input,
    one output) of the other layers. Output: [B, hidden_size].

    Each modality: Linear-BN-LeakyReLU-Dropout to its branch width, then
    `branch_blocks` residual blocks; concatenate; Linear-BN-LeakyReLU-Dropout
    to `hidden_size`, then `trunk_blocks` residual blocks.

    Variants (the paper only says "tuning fully connected channels and
    adding extra max-pooling features", so these are readings):
      plain     every branch is `branch_size` wide (ResNetLike as cited).
      imbalance channels follow the input: branch m is
                branch_size * d_m / max(d) wide (rgb 1024, audio 128 by
                default) instead of blowing audio up to rgb's width.
      concat    extra max-pooled features: F = 2 * sum(feature_sizes), the
                means of every modality then their maxes over frames
                (`FramePooling("average")` then `FramePooling("max")`,
                concatenated); each branch sees [mean_m, max_m]. Widths as
                plain.
    The paper gives no sizes: the defaults (widths, block counts, dropout,
    LeakyReLU slope 0.2 as in Keras) are ours.
    """

    def __init__(self, feature_sizes=(1024, 128), variant="plain",
                 branch_size=1024, hidden_size=1024, branch_blocks=1,
                 trunk_blocks=2, dropout=0.3, **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(
                f"unknown variant '{variant}'; choose one of {list(VARIANTS)}")
        self.feature_sizes = list(feature_sizes)
        self.variant = variant
        self.branch_size = branch_size
        self.hidden_size = hidden_size
        self.branch_blocks = branch_blocks
        self.trunk_blocks = trunk_blocks
        self.dropout = dropout
        # Under "concat" every modality arrives twice: its mean and its max.
        self._copies = 2 if variant == "concat" else 1
        self.branches = [
            _Stage(width, branch_blocks, dropout, name=f"branch_{i}")
            for i, width in enumerate(self.branch_widths())]
        self.trunk = _Stage(hidden_size, trunk_blocks, dropout, name="trunk")

    def branch_widths(self):
        """Channels of each modality's branch, per the variant."""
        if self.variant == "imbalance":
            largest = max(self.feature_sizes)
            return [max(1, round(self.branch_size * size / largest))
                    for size in self.feature_sizes]
        return [self.branch_size] * len(self.feature_sizes)

    def input_size(self):
        """Features the input must have: F above."""
        return self._copies * sum(self.feature_sizes)

    def build(self, input_shape):
        if input_shape[-1] != self.input_size():
            raise ValueError(
                f"ResNetLike({self.variant}) over {self.feature_sizes} "
                f"expects {self.input_size()} features, "
                f"got {input_shape[-1]}")
        batch = input_shape[0]
        for branch, size in zip(self.branches, self.feature_sizes):
            branch.build((batch, self._copies * size))
        self.trunk.build((batch, sum(self.branch_widths())))

    def split(self, x):
        """Each branch's input: its modality, under "concat" mean then max."""
        total = sum(self.feature_sizes)
        start = 0
        for size in self.feature_sizes:
            part = x[:, start:start + size]
            if self.variant == "concat":
                peak = x[:, total + start:total + start + size]
                part = ops.concatenate([part, peak], axis=-1)
            yield part
            start += size

    def call(self, x, training=None):
        branches = [branch(part, training=training) for branch, part in
                    zip(self.branches, self.split(x))]
        return self.trunk(ops.concatenate(branches, axis=-1),
                          training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_size)

    def get_config(self):
        return {
            **super().get_config(),
            "feature_sizes": self.feature_sizes,
            "variant": self.variant,
            "branch_size": self.branch_size,
            "hidden_size": self.hidden_size,
            "branch_blocks": self.branch_blocks,
            "trunk_blocks": self.trunk_blocks,
            "dropout": self.dropout,
        }
