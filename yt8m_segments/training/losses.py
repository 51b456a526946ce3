"""Training losses.

Every loss comes in a per-example form returning [B] (what a `strategy.run`
step wants: reduce with `tf.nn.compute_average_loss(per_example,
global_batch_size=...)`) and, where a batch mean is handy, a mean form.
All are plain TF ops: usable inside tf.function and under any tf.distribute
strategy. Probabilities are clipped to [1e-7, 1 - 1e-7] before logs
(float16 / bfloat16 ones are computed in float32 first, mixed precision safe).

Segment losses read the rated-segment view's tensors (views.rated_segment_dataset):
  labels  [B, C] float  the rated score of a rated pair, else 0
  weights [B, C] float  1 on rated pairs; negative_weight / |A\\C| on the
                        video's weak negatives; 0 elsewhere
  rated   [B, C] bool   whether (segment, class) was rated
The weak ("mined") negatives, the classes outside the video's labels (A\\C in
the 2nd-place paper), are identified as  mined = (weights > 0) & ~rated.
Rated pairs always have weight 1 and other unrated classes weight 0, so this
is exact as long as the view was built with `negative_weight > 0` (with
`--negative_weight=0` there are no mined negatives to find).

`segment_loss(name)` picks one by `--segment_loss` name:
  weighted       2nd place: CE on rated pairs + alpha * mean_{A\\C} CE(p, 0)
                 (alpha = the view's negative_weight)
  seventh_place  7th place: -(1.5 y log p + (1 - y) log(1 - p)) on rated pairs
                 - 0.5 * mean_{mined} log(1 - p)
  rated_only     CE on rated pairs only
"""

import tensorflow as tf

_EPSILON = 1e-7

SEVENTH_PLACE_POSITIVE_WEIGHT = 1.5
SEVENTH_PLACE_NEGATIVE_WEIGHT = 0.5


def _clip(probabilities):
    """float32 at least (1 - 1e-7 is 1 in float16), clipped into (0, 1)."""
    probabilities = tf.convert_to_tensor(probabilities)
    if probabilities.dtype in (tf.float16, tf.bfloat16):
        probabilities = tf.cast(probabilities, tf.float32)
    return tf.clip_by_value(probabilities, _EPSILON, 1.0 - _EPSILON)


def weighted_bce_per_example(labels, probabilities, weights=None):
    """sum_c w_c * CE(y_c, p_c) per example: [B, C] each -> [B].

    Summing over classes (not averaging) follows the starter code's
    CrossEntropyLoss. `weights=None` weighs every class 1.
    """
    probabilities = _clip(probabilities)
    labels = tf.cast(labels, probabilities.dtype)
    cross_entropy = -(labels * tf.math.log(probabilities)
                      + (1.0 - labels) * tf.math.log(1.0 - probabilities))
    if weights is not None:
        cross_entropy = cross_entropy * tf.cast(weights, cross_entropy.dtype)
    return tf.reduce_sum(cross_entropy, axis=-1)


def weighted_binary_crossentropy(labels, probabilities, weights=None):
    """sum_c w_c * CE(y_c, p_c) per example, averaged over the batch.

    The batch mean of `weighted_bce_per_example`. With `weights` from the
    rated-segment view this is the 2nd-place fine-tuning loss: CE on rated
    pairs + alpha * mean CE(A\\C, 0); zero weights drop unrated pairs
    entirely. Shapes: [B, C] each.
    """
    return tf.reduce_mean(
        weighted_bce_per_example(labels, probabilities, weights))


def mined_negatives(weights, rated):
    """The view's weak negatives (classes outside the video's labels): bool [B, C].

    (weights > 0) & ~rated; see the module docstring.
    """
    return tf.logical_and(weights > 0, tf.logical_not(tf.cast(rated, tf.bool)))


def rated_only_per_example(labels, probabilities, rated):
    """sum over rated pairs of CE(y, p): [B, C] each -> [B]."""
    return weighted_bce_per_example(labels, probabilities,
                                    tf.cast(rated, probabilities.dtype))


def seventh_place_per_example(labels, probabilities, weights, rated,
                              positive_weight=SEVENTH_PLACE_POSITIVE_WEIGHT,
                              negative_weight=SEVENTH_PLACE_NEGATIVE_WEIGHT):
    """The 7th-place loss (Lee 2019, docs/results.md), per example: [B].

      - sum_{rated c} (positive_weight * y log p + (1 - y) log(1 - p))
      - negative_weight * mean_{mined c} log(1 - p)

    mined = (weights > 0) & ~rated, the same classes outside the video's
    labels that the 2nd-place loss uses (only which are mined counts here,
    not the view's weight values). An example without mined negatives gets no
    second term.
    """
    probabilities = _clip(probabilities)
    dtype = probabilities.dtype
    labels = tf.cast(labels, dtype)
    log_p = tf.math.log(probabilities)
    log_not_p = tf.math.log(1.0 - probabilities)
    rated_mask = tf.cast(rated, dtype)
    rated_term = -tf.reduce_sum(
        rated_mask * (positive_weight * labels * log_p
                      + (1.0 - labels) * log_not_p), axis=-1)
    mined = tf.cast(mined_negatives(weights, rated), dtype)
    count = tf.reduce_sum(mined, axis=-1)
    mined_mean = (tf.reduce_sum(mined * log_not_p, axis=-1)
                  / tf.maximum(count, 1.0))
    return rated_term - negative_weight * mined_mean


def seventh_place_loss(labels, probabilities, weights, rated, **options):
    """Batch mean of `seventh_place_per_example`."""
    return tf.reduce_mean(seventh_place_per_example(
        labels, probabilities, weights, rated, **options))


SEGMENT_LOSSES = ("weighted", "seventh_place", "rated_only")


def segment_loss(name, positive_weight=SEVENTH_PLACE_POSITIVE_WEIGHT,
                 negative_weight=SEVENTH_PLACE_NEGATIVE_WEIGHT):
    """The per-example segment loss named by `--segment_loss`.

    Returns `fn(labels, probabilities, weights, rated) -> [B]`, all inputs
    the rated-segment view's [B, C] tensors (see the module docstring).
    `positive_weight` / `negative_weight` are the 7th-place loss's 1.5 / 0.5
    (ignored by the others; the 2nd-place alpha lives in the view's weights,
    i.e. `--negative_weight` of the data pipeline).
    """
    if name == "weighted":
        def loss(labels, probabilities, weights, rated):
            del rated
            return weighted_bce_per_example(labels, probabilities, weights)
    elif name == "seventh_place":
        def loss(labels, probabilities, weights, rated):
            return seventh_place_per_example(
                labels, probabilities, weights, rated,
                positive_weight=positive_weight,
                negative_weight=negative_weight)
    elif name == "rated_only":
        def loss(labels, probabilities, weights, rated):
            del weights
            return rated_only_per_example(labels, probabilities, rated)
    else:
        raise ValueError(f"unknown segment loss '{name}'; choose one of "
                         f"{', '.join(SEGMENT_LOSSES)}")
    loss.__name__ = f"{name}_per_example"
    return loss
