"""NetFV, WILLOW's (Miech et al. 2017) learnable Fisher Vector."""

import keras
from keras import ops

from yt8m_segments.layers.netvlad import SoftAssignmentPooling, l2_normalize


@keras.saving.register_keras_serializable(package="yt8m_segments")
class NetFV(SoftAssignmentPooling):
    """First and second order Fisher statistics of real frames per cluster.

    With soft assignments a_k(x) (as NetVLAD's), learned centres c_k and
    per-feature scales sigma_k = w_k^2 + 1e-6 (w initialised around 1):
      first  = sum_x a_k(x) (x - c_k) / sigma_k
      second = sum_x a_k(x) ((x - c_k)^2 / sigma_k^2 - 1)
    computed from sums of a x and a x^2, so no [B, T, K, D] tensor exists.
    As in WILLOW's code, `first` is L2-normalised within each cluster and then
    globally, `second` globally only; centres are their own weights (WILLOW's
    `--fv_couple_weights=False`; its default ties them to 0.01 x the
    assignment kernel).

    Call: `frames` [B, T, D] float, `mask` [B, T] bool (None = all real).
    Output: [B, 2 * cluster_size * D]: first order, then second, cluster-major.
    """

    def __init__(self, cluster_size=128, add_batch_norm=True, **kwargs):
        super().__init__(cluster_size, add_batch_norm, **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        self.centroids = self._centre_weight("centroids")
        self.scales = self._centre_weight("scales", mean=1.0)

    def pool_assigned(self, x, a):
        mass = ops.sum(a, axis=1)[..., None]
        first_moment = ops.einsum("btk,btd->bkd", a, x)
        second_moment = ops.einsum("btk,btd->bkd", a, ops.square(x))
        sigma = ops.square(self.scales) + 1e-6
        c = self.centroids
        first = (first_moment - mass * c) / sigma
        second = ((second_moment - 2 * c * first_moment + mass * ops.square(c))
                  / ops.square(sigma) - mass)
        size = self.cluster_size * self.feature_size
        first = l2_normalize(ops.reshape(l2_normalize(first), (-1, size)))
        second = l2_normalize(ops.reshape(second, (-1, size)))
        return ops.concatenate([first, second], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.cluster_size * input_shape[-1])
