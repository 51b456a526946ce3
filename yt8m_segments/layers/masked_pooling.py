"""Pooling over the frame axis that ignores padded frames.

Shapes: `x` [B, T, C], `mask` [B, T] bool (True = real frame); outputs [B, C].
A row with no real frame pools to zeros rather than -inf or NaN.
"""

from keras import ops


def masked_max(x, mask):
    """Max over real frames."""
    mask = ops.expand_dims(ops.cast(mask, "bool"), -1)
    lowest = ops.cast(ops.full_like(x, -3.0e38), x.dtype)
    pooled = ops.max(ops.where(mask, x, lowest), axis=1)
    any_frame = ops.any(mask, axis=1)
    return ops.where(any_frame, pooled, ops.zeros_like(pooled))


def masked_mean(x, mask):
    """Mean over real frames."""
    weights = ops.expand_dims(ops.cast(mask, x.dtype), -1)
    total = ops.sum(x * weights, axis=1)
    count = ops.maximum(ops.sum(weights, axis=1), 1.0)
    return total / count


POOLING = {"max": masked_max, "average": masked_mean}


def get(name):
    """The pooling function called `name`, with the choices in the error."""
    if name not in POOLING:
        raise ValueError(
            f"unknown pooling '{name}'; choose one of {sorted(POOLING)}")
    return POOLING[name]
