"""NeXtVLAD (Lin et al. 2018, arXiv 1811.05014), the 2018 3rd / 2019 3rd-place aggregator."""

import keras
from keras import ops

from yt8m_segments.layers.frame_aggregator import FrameAggregator
from yt8m_segments.layers.netvlad import frame_mask, l2_normalize
from yt8m_segments.layers.batch_norm import BatchNorm


@keras.saving.register_keras_serializable(package="yt8m_segments")
class NeXtVLAD(FrameAggregator):
    """NetVLAD over G low-dimensional groups of an expanded frame, with attention.

    Each frame x [D] is expanded to x' = W_e x + b [lambda*D] and split into G
    groups x'_g of F = lambda*D/G features. Group g of a frame is weighted by
    sigmoid(w_g . x' + b_g) and soft-assigned over K clusters by
    softmax(BN(W_g x')), computed from the whole x' (batch norm instead of a
    bias). Residuals x'_g - c_k to centroids shared by all groups are summed
    over real frames and groups, L2-normalised within each cluster, flattened,
    then batch-normalised; there is no global L2 (the paper's choice).

    Masks: padded frames are zeroed, get attention 0 and stay out of the
    assignment batch norm; rows without a real frame stay out of the output
    batch norm's statistics.

    Call: `frames` [B, T, D] float, `mask` [B, T] bool (None = all real).
    Output: [B, cluster_size * F], cluster-major, F = expansion * D / groups.
    """

    def __init__(self, cluster_size=128, groups=8, expansion=2, **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = cluster_size
        self.groups = groups
        self.expansion = expansion
        self.attention = keras.layers.Dense(
            groups, activation="sigmoid", name="attention")
        self.assignment = keras.layers.Dense(
            groups * cluster_size, use_bias=False, name="assignment")
        self.assignment_norm = BatchNorm(
            name="assignment_bn")
        self.output_norm = BatchNorm(name="vlad_bn")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        expanded = self.expansion * input_shape[-1]
        if expanded % self.groups:
            raise ValueError(
                f"expansion * feature size ({expanded}) must be divisible by "
                f"groups ({self.groups})")
        self.group_size = expanded // self.groups
        # Weights, not a Dense: the width depends on D, known only here.
        self.expansion_kernel = self.add_weight(
            shape=(input_shape[-1], expanded), name="expansion_kernel",
            initializer="glorot_uniform")
        self.expansion_bias = self.add_weight(
            shape=(expanded,), name="expansion_bias", initializer="zeros")
        expanded_shape = input_shape[:-1] + (expanded,)
        self.attention.build(expanded_shape)
        self.assignment.build(expanded_shape)
        self.assignment_norm.build(
            input_shape[:-1] + (self.groups * self.cluster_size,))
        self.centroids = self.add_weight(
            shape=(self.cluster_size, self.group_size), name="centroids",
            initializer=keras.initializers.RandomNormal(
                stddev=self.group_size ** -0.5))
        self.output_norm.build(
            (input_shape[0], self.cluster_size * self.group_size))

    def call(self, frames, mask=None, training=None):
        """`pool_frames(frame_features(...))` without the concatenation
        and its slices: copies of [B, T, lambda*D + G*K], forward and
        backward, that only windowed inference needs."""
        mask = frame_mask(frames, mask)
        x, a = self._expand_and_assign(frames, mask, training)
        return self._aggregate(x, a, mask, training)

    def frame_features(self, frames, mask=None, training=None):
        """Per-frame part: [expanded frame, attention-weighted assignments].

        [B, T, D] -> [B, T, lambda*D + G*K]; padded frames get assignment 0
        and stay out of the training batch statistics.
        """
        mask = frame_mask(frames, mask)
        return ops.concatenate(
            self._expand_and_assign(frames, mask, training), axis=-1)

    def pool_frames(self, features, mask=None, training=None):
        """`frame_features` [N, T, F] of real frames -> [N, K * group size]."""
        mask = frame_mask(features, mask)
        expanded = self.groups * self.group_size
        a = features[..., expanded:]
        a = ops.where(mask[..., None], a, ops.zeros_like(a))
        return self._aggregate(features[..., :expanded], a, mask, training)

    def _expand_and_assign(self, frames, mask, training):
        """(x' [B, T, lambda*D], assignments [B, T, G*K], 0 on padding)."""
        real = ops.cast(mask, frames.dtype)[..., None]
        x = ops.where(mask[..., None], frames, ops.zeros_like(frames))
        x = ops.matmul(x, self.expansion_kernel) + self.expansion_bias
        attention = self.attention(x) * real
        logits = self.assignment_norm(self.assignment(x), training=training,
                                      mask=mask)
        batch, time = ops.shape(x)[0], ops.shape(x)[1]
        logits = ops.reshape(logits,
                             (batch, time, self.groups, self.cluster_size))
        a = ops.softmax(logits, axis=-1) * attention[..., None]
        return x, ops.reshape(a, (batch, time, self.groups * self.cluster_size))

    def _aggregate(self, x, a, mask, training):
        """Residuals summed over frames and groups, normalised: [N, K * F]."""
        batch, time = ops.shape(x)[0], ops.shape(x)[1]
        a = ops.reshape(a, (batch, time, self.groups, self.cluster_size))
        grouped = ops.reshape(x, (batch, time, self.groups, self.group_size))
        vlad = ops.einsum("btgk,btgf->bkf", a, grouped)
        vlad = vlad - ops.sum(a, axis=(1, 2))[..., None] * self.centroids
        vlad = ops.reshape(l2_normalize(vlad, axis=-1),
                           (-1, self.cluster_size * self.group_size))
        # A new tensor: the batch norm's per-row mask must not reach the head.
        return ops.copy(self.output_norm(vlad, training=training,
                                         mask=ops.any(mask, axis=1)))

    def compute_output_shape(self, input_shape):
        group_size = self.expansion * input_shape[-1] // self.groups
        return (input_shape[0], self.cluster_size * group_size)

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "groups": self.groups, "expansion": self.expansion}
