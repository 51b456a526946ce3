"""Pooling over the frame axis that ignores padded frames.

Shapes: `x` [B, T, C], `mask` [B, T] bool (True = real frame); outputs [B, C].
A row with no real frame pools to zeros rather than -inf or NaN.

Batches without padding (sampled frames, as pretraining reads them) take the
plain op (`unless_padded`): the masked forms cost ~1.5x its time, forward
and backward (bench/model_step.py), for nothing when every frame is real.
"""

import tensorflow as tf
from keras import ops


def unless_padded(mask, plain, masked):
    """`plain()` when every frame of a non-empty `mask` is real, else
    `masked()` (a tf.cond: the batch decides at run time)."""
    mask = ops.cast(mask, "bool")
    all_real = tf.logical_and(tf.reduce_all(mask), tf.size(mask) > 0)
    return tf.cond(all_real, plain, masked)


def masked_max(x, mask):
    """Max over real frames (padding selected down to the lowest float)."""
    frame_mask = ops.expand_dims(ops.cast(mask, "bool"), -1)

    def masked():
        lowest = ops.cast(-3.0e38, x.dtype)
        pooled = ops.max(ops.where(frame_mask, x, lowest), axis=1)
        return ops.where(ops.any(frame_mask, axis=1), pooled, 0.0)
    return unless_padded(mask, lambda: ops.max(x, axis=1), masked)


def masked_mean(x, mask):
    """Mean over real frames."""
    def masked():
        weights = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        total = ops.sum(x * weights, axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), 1.0)
    return unless_padded(mask, lambda: ops.mean(x, axis=1), masked)


POOLING = {"max": masked_max, "average": masked_mean}


def get(name):
    """The pooling function called `name`, with the choices in the error."""
    if name not in POOLING:
        raise ValueError(
            f"unknown pooling '{name}'; choose one of {sorted(POOLING)}")
    return POOLING[name]
