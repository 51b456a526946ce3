"""NetVLAD and the variants the 2019 2nd-place team ensembled.

WILLOW (Miech et al. 2017, after Arandjelovic et al.'s NetVLAD) pools frames
into residuals to learned cluster centres. The 2nd-place paper names
LightNetVLAD, EarlyNetVLAD and non-local NetVLAD (from Tang et al. 2018,
"Non-local NetVLAD Encoding for Video Classification"); all of them are
`NetVLAD` here with options, because they differ in one step each:

- LightNetVLAD (`light=True`): WILLOW's `LightVLAD`, which drops the centroid
  subtraction and aggregates assignment-weighted frames.
- non-local NetVLAD (`non_local=True`): Tang et al.'s block over the K cluster
  descriptors (not over frames), applied after aggregation, before
  normalisation: V + softmax(theta(V) phi(V)^T / sqrt(n)) g(V) W_out, with
  theta, phi, g: D -> n and W_out: n -> D. (Their code scales by 1/sqrt(D)
  and multiplies by phi(V) where g(V) is meant; this follows the formula.)
- EarlyNetVLAD: one VLAD over the concatenated rgb+audio frames (Tang et al.'s
  `early_NetVLADModelLF` feeds 1024+128 features to a single NetVLAD), against
  WILLOW's late-fusion `NetVLADModelLF` with one VLAD per modality. That is a
  choice of input, not of layer: give this layer the concatenated frames, or
  give one instance per modality its slice and concatenate the outputs.
"""

import keras
from keras import ops

from yt8m_segments.layers.frame_aggregator import FrameAggregator
from yt8m_segments.layers.batch_norm import BatchNorm


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """x / ||x|| along `axis`; zero vectors stay zero with finite gradients."""
    square_sum = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(square_sum, epsilon))


def frame_mask(frames, mask):
    """The [B, T] bool mask, all True when `mask` is None."""
    if mask is None:
        return ops.ones(ops.shape(frames)[:2], dtype="bool")
    return ops.cast(mask, "bool")


class SoftAssignmentPooling(FrameAggregator):
    """Shared front end of NetVLAD and NetFV: soft-assign real frames to K clusters.

    frames -> [BN] -> x W -> BN (or + bias) -> softmax over K. Batch norm runs
    with the frame mask, and padded frames get assignment 0 and value 0, so
    they contribute nothing and stay out of batch statistics. Subclasses turn
    (frames [B, T, D], assignment [B, T, K]) into their descriptor.
    """

    def __init__(self, cluster_size, add_batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.cluster_size = cluster_size
        self.add_batch_norm = add_batch_norm
        self.input_norm = (BatchNorm(name="input_bn")
                           if add_batch_norm else None)
        self.assignment = keras.layers.Dense(
            cluster_size, use_bias=not add_batch_norm, name="assignment")
        self.assignment_norm = (
            BatchNorm(name="assignment_bn")
            if add_batch_norm else None)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.feature_size = input_shape[-1]
        if self.add_batch_norm:
            self.input_norm.build(input_shape)
            self.assignment_norm.build(input_shape[:-1] + (self.cluster_size,))
        self.assignment.build(input_shape)

    def _centre_weight(self, name, mean=0.0):
        """A [K, D] weight drawn around `mean` with WILLOW's 1/sqrt(D) spread."""
        return self.add_weight(
            shape=(self.cluster_size, self.feature_size), name=name,
            initializer=keras.initializers.RandomNormal(
                mean=mean, stddev=self.feature_size ** -0.5))

    def assign(self, frames, mask, training):
        """Normalised frames [B, T, D] and assignments [B, T, K], 0 on padding."""
        mask = frame_mask(frames, mask)
        x = ops.where(mask[..., None], frames, ops.zeros_like(frames))
        if self.add_batch_norm:
            x = self.input_norm(x, training=training, mask=mask)
        logits = self.assignment(x)
        if self.add_batch_norm:
            logits = self.assignment_norm(logits, training=training, mask=mask)
        weights = ops.softmax(logits, axis=-1)
        return x, ops.where(mask[..., None], weights, ops.zeros_like(weights))

    def frame_features(self, frames, mask=None, training=None):
        """Per-frame part: [normalised frame, assignments] [B, T, D + K].

        `mask` zeroes padded frames and keeps them out of the training batch
        statistics; at inference every step here is per frame.
        """
        x, a = self.assign(frames, mask, training)
        return ops.concatenate([x, a], axis=-1)

    def pool_frames(self, features, mask=None, training=None):
        """`frame_features` [N, T, D + K] of real frames -> the descriptor."""
        mask = frame_mask(features, mask)
        x = features[..., :self.feature_size]
        a = features[..., self.feature_size:]
        a = ops.where(mask[..., None], a, ops.zeros_like(a))
        return self.pool_assigned(x, a)

    def pool_assigned(self, x, a):
        """Frames [N, T, D] and assignments [N, T, K] (0 on padding) -> [N, H]."""
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "cluster_size": self.cluster_size,
                "add_batch_norm": self.add_batch_norm}


@keras.saving.register_keras_serializable(package="yt8m_segments")
class NetVLAD(SoftAssignmentPooling):
    """Sum over real frames of a_k(x) (x - c_k), per cluster k; see the module doc.

    Then L2 within each cluster and L2 over the whole vector. `light` drops
    c_k; `non_local` relates the K cluster descriptors with a non-local block
    of inner width `nonlocal_size` (default: `cluster_size`, as in Tang et
    al.'s code) before the normalisation.

    Call: `frames` [B, T, D] float, `mask` [B, T] bool (None = all real).
    Output: [B, cluster_size * D], cluster-major.
    """

    def __init__(self, cluster_size=256, add_batch_norm=True, light=False,
                 non_local=False, nonlocal_size=None, **kwargs):
        super().__init__(cluster_size, add_batch_norm, **kwargs)
        self.light = light
        self.non_local = non_local
        self.nonlocal_size = nonlocal_size

    def build(self, input_shape):
        super().build(input_shape)
        if not self.light:
            self.centroids = self._centre_weight("centroids")
        if self.non_local:
            width = self.nonlocal_size or self.cluster_size
            self.nonlocal_theta, self.nonlocal_phi, self.nonlocal_g = (
                self.add_weight(shape=(self.feature_size, width), name=name,
                                initializer="glorot_uniform")
                for name in ("nonlocal_theta", "nonlocal_phi", "nonlocal_g"))
            self.nonlocal_out = self.add_weight(
                shape=(width, self.feature_size), name="nonlocal_out",
                initializer="glorot_uniform")

    def pool_assigned(self, x, a):
        vlad = ops.einsum("btk,btd->bkd", a, x)
        if not self.light:
            vlad = vlad - ops.sum(a, axis=1)[..., None] * self.centroids
        if self.non_local:
            vlad = vlad + self._non_local(vlad)
        vlad = l2_normalize(vlad, axis=-1)
        return l2_normalize(ops.reshape(
            vlad, (-1, self.cluster_size * self.feature_size)), axis=-1)

    def _non_local(self, vlad):
        """Each cluster descriptor attends to all K of them: [B, K, D] -> same."""
        theta = ops.matmul(vlad, self.nonlocal_theta)
        phi = ops.matmul(vlad, self.nonlocal_phi)
        scores = ops.einsum("bkn,bjn->bkj", theta, phi)
        scores = ops.softmax(scores * theta.shape[-1] ** -0.5, axis=-1)
        return ops.matmul(ops.matmul(scores, ops.matmul(vlad, self.nonlocal_g)),
                          self.nonlocal_out)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.cluster_size * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "light": self.light,
                "non_local": self.non_local,
                "nonlocal_size": self.nonlocal_size}
