"""Mean teacher (4th-place paper; Tarvainen & Valpola 2017).

On unlabeled (test) segments: the teacher, an exponential moving average of
the student's weights, predicts on the original frames; the student predicts
on time-flipped frames; the consistency cost is the MSE between the two
probability vectors. The paper reports it did not improve its score; it is
here to reproduce that.

One train step, sketched (per replica; `u` an unlabeled batch):

    teacher = EmaTeacher(model, decay=0.999)         # once, in strategy.scope()
    ...
    student_probs = model({"frames": time_flip(u["frames"], u["mask"]),
                           "mask": u["mask"]}, training=True)
    teacher_probs = teacher.model(u, training=False)
    consistency = mean_teacher_loss_per_example(student_probs, teacher_probs)
    loss = supervised + weight * tf.nn.compute_average_loss(consistency, ...)
    ... apply gradients ...
    teacher.update(model)                            # after the optimizer step

`time_flip` keeps masked-out positions where they are, so the student's mask
is the unchanged `u["mask"]`.
"""

import keras
import tensorflow as tf


def flipped_positions(mask):
    """Source index of every position after reversing the masked-in ones: [..., T].

    Along the last axis, the masked-in positions p_0 < ... < p_{n-1} take
    the values of p_{n-1}, ..., p_0; masked-out positions keep their own.
    Works for any leading shape and any mask (leading, trailing or inner
    padding), with static or dynamic T.
    """
    mask = tf.cast(mask, tf.bool)
    length = tf.shape(mask)[-1]
    positions = tf.broadcast_to(tf.range(length), tf.shape(mask))
    # Masked-in positions first, in order, then the rest: sorted[r] is the
    # position of rank r among the masked-in ones.
    key = tf.where(mask, positions, positions + length)
    by_rank = tf.argsort(key, axis=-1, stable=True)
    count = tf.reduce_sum(tf.cast(mask, tf.int32), axis=-1, keepdims=True)
    rank = tf.cumsum(tf.cast(mask, tf.int32), axis=-1) - 1
    source_rank = tf.maximum(count - 1 - rank, 0)
    batch_dims = len(mask.shape) - 1
    source = tf.gather(by_rank, source_rank, batch_dims=batch_dims)
    return tf.where(mask, source, positions)


def time_flip(frames, mask):
    """Reverse each example's real frames in time: frames [..., T, D], mask [..., T].

    Only the masked-in frames move (their order is reversed); masked-out
    positions keep their values, so the mask is unchanged. For per-video
    windows (`window_index` [B, S, W] with `window_mask`), flip the indices
    instead: tf.gather(window_index, flipped_positions(window_mask),
    batch_dims=2).
    """
    frames = tf.convert_to_tensor(frames)
    source = flipped_positions(mask)
    return tf.gather(frames, source, batch_dims=len(source.shape) - 1)


def mean_teacher_loss_per_example(student_probs, teacher_probs):
    """mean_c (student - teacher)^2 per example: [B, C] -> [B].

    The teacher side is a constant (stop_gradient).
    """
    student_probs = tf.convert_to_tensor(student_probs)
    teacher = tf.stop_gradient(tf.cast(teacher_probs, student_probs.dtype))
    return tf.reduce_mean(tf.square(student_probs - teacher), axis=-1)


class EmaTeacher:
    """A clone of a Keras model whose weights track the student's EMA.

    teacher = decay * teacher + (1 - decay) * student, for every float weight
    in `model.weights` (trainable ones and BatchNorm moving statistics; the
    teacher is run with training=False, so its statistics must come from
    somewhere). Build it once, inside `strategy.scope()` when training under
    a strategy, after the student is built; it starts equal to the student.
    `update(student)` works eagerly and inside tf.function, in cross-replica
    context (after `strategy.run`) or in replica context (inside it: the
    update then runs once, through merge_call).

    Checkpoint `teacher.model`'s weights with the rest to resume exactly.
    """

    def __init__(self, student, decay=0.999):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.model = keras.models.clone_model(student)
        self.model.set_weights(student.get_weights())
        self.model.trainable = False
        self._check(student)

    def _pairs(self, student):
        return [(t, s) for t, s in zip(self.model.weights, student.weights)
                if t.dtype.startswith("float") or t.dtype.startswith("bfloat")]

    def _check(self, student):
        if len(self.model.weights) != len(student.weights) or any(
                tuple(t.shape) != tuple(s.shape)
                for t, s in zip(self.model.weights, student.weights)):
            raise ValueError("the student's weights do not match the teacher's"
                             " (not the model the teacher was cloned from?)")

    def _assign(self, student):
        decay = self.decay
        for teacher_weight, student_weight in self._pairs(student):
            teacher_weight.assign(decay * teacher_weight.value
                                  + (1.0 - decay) * student_weight.value)

    def update(self, student):
        """teacher <- decay * teacher + (1 - decay) * student."""
        if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
            self._assign(student)
        elif tf.distribute.has_strategy():
            tf.distribute.get_replica_context().merge_call(
                lambda strategy: self._assign(student))
        else:
            self._assign(student)

    def __call__(self, inputs, training=False):
        return self.model(inputs, training=training)
