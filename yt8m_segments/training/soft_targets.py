"""Distillation from a teacher's cached predictions (soft targets).

The teacher is a probability cache (yt8m_segments/postprocess/cache.py, written by
inference.py over the rated videos), opened through cache.ProbabilityCache:
one reader for the format.
`TeacherLookup.from_cache_dir(path, class_ids)` keeps the columns of the
student's classes in the student's order (a clear error names any class the
teacher lacks). Calling the lookup on a batch of string segment ids (any
shape S) gives (teacher_probs float32 [*S, C], found bool [*S]): a
tf.lookup.StaticHashTable maps id -> row, then tf.gather reads the rows.
Ids the cache lacks get zero rows and found=False: multiply their KD term by
`found` (`soft_target_loss_per_example(..., mask=found)` does) so they get
none.

Where to call it: either in the input pipeline,
`dataset.map(lookup.add_to_batch)` (adds "teacher_probs" and "teacher_found"
to each batch dict, so the targets are distributed with the batch), or in
the train step on `batch["segment_id"]`. The probabilities live in one
host (CPU) tensor, fp16: 2 bytes per segment and class (about 470 MB for
237k segments x 1000 classes).

The loss (`soft_target_loss_per_example`): binary cross-entropy of the
student's probabilities against the teacher's, summed over classes like the
hard-label loss (`losses.weighted_bce_per_example`), so the two terms have
the same scale and `total = hard + kd_weight * soft` is a plain mix. Classes
are independent sigmoids here, so per-class BCE (not a softmax KL over
classes, as in the mixture's on-the-fly KD) is the natural soft target. It
equals KL(teacher || student) per class plus the teacher's entropy, a
constant: the gradients are those of the KL, but the value is not 0 when the
student matches the teacher. With a temperature T != 1 both sides are
softened in logit space, q = sigmoid(logit(p) / T), and the loss is scaled
by T^2 (Hinton et al. 2015) so its gradients keep their size across T.
"""

import numpy as np
import tensorflow as tf

from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.training import losses

_EPSILON = 1e-7


def column_positions(teacher_class_ids, class_ids, where="the teacher cache"):
    """Teacher column of each student class id; ValueError names any missing."""
    position = {int(c): i for i, c in enumerate(teacher_class_ids)}
    missing = [int(c) for c in class_ids if int(c) not in position]
    if missing:
        raise ValueError(
            f"{where} has no column for classes {missing[:10]}"
            f"{'...' if len(missing) > 10 else ''} ({len(missing)} of "
            f"{len(class_ids)} student classes missing)")
    return [position[int(c)] for c in class_ids]


class TeacherLookup:
    """Segment id -> cached teacher probabilities, as TF ops.

    `segment_ids` [N] strings (or bytes), `probabilities` [N, C] (kept as
    float16; returned as float32). Duplicate ids are an error.
    """

    def __init__(self, segment_ids, probabilities):
        segment_ids = np.asarray(
            [s.decode() if isinstance(s, bytes) else str(s)
             for s in segment_ids], dtype=object)
        probabilities = np.asarray(probabilities)
        if probabilities.ndim != 2 or probabilities.shape[0] != len(segment_ids):
            raise ValueError(
                f"teacher probabilities {probabilities.shape} do not match "
                f"{len(segment_ids)} segment ids: expected [N, C]")
        if len(set(segment_ids)) != len(segment_ids):
            raise ValueError("teacher segment ids contain duplicates")
        self.num_segments, self.num_classes = probabilities.shape
        with tf.device("/cpu:0"):
            # One zero row at the end: what missing ids read.
            self._probabilities = tf.constant(np.concatenate(
                [probabilities.astype(np.float16),
                 np.zeros((1, self.num_classes), np.float16)]))
            self._table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(segment_ids.astype(str), tf.string),
                    tf.range(self.num_segments, dtype=tf.int64)),
                default_value=-1)

    @classmethod
    def from_cache_dir(cls, path, class_ids):
        """Load a teacher cache, columns reordered to `class_ids`."""
        teacher = cache_lib.ProbabilityCache.open(path)
        columns = column_positions(teacher.class_ids, class_ids,
                                   where=f"teacher cache {path}")
        return cls(teacher.segment_ids, np.asarray(teacher.segment_probs[:, columns],
                                                   dtype=np.float16))

    def __call__(self, segment_ids):
        """(probabilities float32 [*S, C], found bool [*S]) for ids [*S]."""
        rows = self._table.lookup(tf.convert_to_tensor(segment_ids, tf.string))
        found = rows >= 0
        rows = tf.where(found, rows, self.num_segments)  # the zero row
        probabilities = tf.gather(self._probabilities, rows)
        return tf.cast(probabilities, tf.float32), found

    def add_to_batch(self, batch):
        """For dataset.map: the batch dict plus "teacher_probs", "teacher_found"."""
        probabilities, found = self(batch["segment_id"])
        return {**batch, "teacher_probs": probabilities,
                "teacher_found": found}


def soften(probabilities, temperature):
    """sigmoid(logit(p) / T): p itself when T == 1."""
    if temperature == 1:
        return probabilities
    p = tf.clip_by_value(probabilities, _EPSILON, 1.0 - _EPSILON)
    return tf.sigmoid((tf.math.log(p) - tf.math.log(1.0 - p)) / temperature)


def soft_target_loss_per_example(teacher_probs, student_probs, temperature=1.0,
                                 mask=None):
    """T^2 * sum_c BCE(soften(teacher), soften(student)) per example: [B].

    `teacher_probs` are constants (stop_gradient). `mask` [B] (e.g. the
    lookup's `found`) zeroes examples without a teacher. See the module
    docstring for why BCE and what the temperature does.
    """
    student_probs = tf.convert_to_tensor(student_probs)
    teacher = tf.stop_gradient(tf.cast(teacher_probs, student_probs.dtype))
    per_example = losses.weighted_bce_per_example(
        soften(teacher, temperature), soften(student_probs, temperature))
    if temperature != 1:
        per_example = per_example * (temperature ** 2)
    if mask is not None:
        per_example = per_example * tf.cast(mask, per_example.dtype)
    return per_example
