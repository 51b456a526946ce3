"""Batch normalization whose moving statistics are right after few steps."""

import keras
import tensorflow as tf
from keras import ops

# Values from which a training call takes TF's fused batch norm.
FUSED_MIN_SIZE = 2 ** 18


@keras.saving.register_keras_serializable(package="yt8m_segments")
class BatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with debiased moving statistics.

    Keras starts the moving variance at 1 and blends each batch in with
    weight 1 - momentum, so after t updates a share momentum^t of it is still
    the initial 1. On L2-normalised frames the true per-dimension variance
    is ~1/1152: after the demo's 320 pretraining steps (0.99^320 = 4%) the
    moving variance was 47x the true one, inference normalised every feature
    to ~1/7 of its training scale, and the pretrained DBoF's validation
    GAP@20 was 0.07 with moving statistics against 0.37 with batch ones.

    Here update t uses the momentum m (1 - m^(t-1)) / (1 - m^t), which makes
    the moving statistic exactly Adam's bias-corrected average of the batch
    statistics seen (the first update takes the batch's, the initial values
    never count), and tends to `momentum` as t grows. `num_updates` (a
    non-trainable weight after gamma, beta, moving mean and variance) counts
    the updates, so a resumed run continues the same averages.

    `synchronized` (set by training.distribution.synchronize_batch_norm
    when a run has several replicas) takes the batch statistics over every
    replica's examples, masked frames left out, so that a distributed step
    normalises as one device would on the whole batch (Keras' own layer
    ignores `synchronized` when there is a mask).

    Call: as BatchNormalization; `mask` [B, T] keeps padded frames out of the
    batch statistics.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.num_updates = self.add_weight(
            shape=(), initializer="zeros", trainable=False,
            name="num_updates", autocast=False)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        inputs = ops.cast(inputs, keras.backend.result_type(inputs.dtype,
                                                             "float32"))
        outputs, mean, variance = self._normalize_batch(inputs, mask)
        count = self.num_updates + 1.0
        momentum = self.momentum * (1.0 - self.momentum ** (count - 1.0)) / (
            1.0 - self.momentum ** count)
        self.num_updates.assign(count)
        for average, batch in ((self.moving_mean, mean),
                               (self.moving_variance, variance)):
            average.assign(average * momentum + ops.cast(batch, average.dtype)
                           * (1.0 - momentum))
        return ops.cast(outputs, self.compute_dtype)

    def _normalize_batch(self, inputs, mask):
        """(outputs, batch mean, batch variance) of a training call.

        Large batches whose frames are all real (sampled frames, as
        pretraining reads them) take TF's fused batch norm: one pass for the
        statistics and the output, one for the gradient, where the op-by-op
        path below takes ~1.5x the time (bench/model_step.py). The fused op
        costs ~0.4 ms more per call, forward and backward, so tensors under
        FUSED_MIN_SIZE values (the break-even was ~180K on 2 cores) take
        the op-by-op path, as do padded batches, other axes and synchronized
        replicas: padding stays out of the statistics either way.
        """
        if not self._fusable(inputs):
            return self._normalize_unfused(inputs, mask)
        fused = tf.size(inputs) >= FUSED_MIN_SIZE
        if mask is not None:
            fused = tf.logical_and(fused, tf.reduce_all(ops.cast(mask, "bool")))
        return tf.cond(fused, lambda: self._normalize_fused(inputs),
                       lambda: self._normalize_unfused(inputs, mask))

    def _fusable(self, inputs):
        """Whether TF's fused op computes this call: float32 statistics over
        every axis but the last, on one replica (its epsilon floor is
        1.001e-5)."""
        rank = len(inputs.shape)
        return (not self.synchronized and rank >= 2
                and inputs.dtype == tf.float32 and self.epsilon >= 1.001e-5
                and list(self._reduction_axes) == list(range(rank - 1)))

    def _normalize_fused(self, inputs):
        width = inputs.shape[-1]
        rows = tf.reshape(inputs, [-1, 1, 1, width])
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            rows,
            ops.cast(self.gamma, inputs.dtype) if self.scale
            else tf.ones([width], inputs.dtype),
            ops.cast(self.beta, inputs.dtype) if self.center
            else tf.zeros([width], inputs.dtype),
            epsilon=self.epsilon, is_training=True)
        # The op returns the unbiased variance; the statistics are biased.
        count = tf.cast(tf.shape(rows)[0], variance.dtype)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        return tf.reshape(outputs, tf.shape(inputs)), mean, variance

    def _normalize_unfused(self, inputs, mask):
        mean, variance = self._moments(inputs, mask)
        outputs = ops.batch_normalization(
            x=inputs, mean=mean, variance=variance, axis=self.axis,
            offset=ops.cast(self.beta, inputs.dtype) if self.center else None,
            scale=ops.cast(self.gamma, inputs.dtype) if self.scale else None,
            epsilon=self.epsilon)
        return outputs, mean, variance

    def _moments(self, inputs, mask):
        """Mean and variance of the real frames ([B, T] `mask`, [B] for
        per-example inputs), all replicas' when synchronized.

        Weighted sums over the mask's axes are one matrix-vector product
        each ([N] x [N, C]): Keras' masked moments broadcast the mask to the
        input's shape and select twice. The mean is held constant in the
        variance, as tf.nn.moments does: its gradient there is zero.
        """
        if mask is None:
            return super()._moments(inputs, mask)
        context = (tf.distribute.get_replica_context() if self.synchronized
                   else None)
        weights = tf.reshape(ops.cast(mask, inputs.dtype), [-1])

        def total(values):
            """Summed over the replicas."""
            return context.all_reduce("sum", values) if context else values

        def weighted(values):
            """[N] x [N, C] (a matmul: static under XLA, where tensordot's
            transposes were not)."""
            return total(tf.linalg.matvec(
                tf.reshape(values, [-1, values.shape[-1]]), weights,
                transpose_a=True))

        count = total(ops.sum(weights)) + keras.backend.epsilon()
        mean = weighted(inputs) / count
        variance = weighted(tf.math.squared_difference(
            inputs, tf.stop_gradient(mean))) / count
        return mean, variance
