"""Segment losses, soft targets and mean teacher against numpy loops."""

import numpy as np
import pytest
import tensorflow as tf

from yt8m_segments.postprocess import cache
from yt8m_segments.training import losses
from yt8m_segments.training import mean_teacher
from yt8m_segments.training import soft_targets
from yt8m_segments.models.registry import ModelConfig, build_model

EPS = 1e-7


def clip(p):
    """Clipped in float32, as the losses do (1 - 1e-7 rounds in float32)."""
    return np.clip(np.float32(p), np.float32(EPS), np.float32(1 - EPS))


def ce(y, p):
    p = clip(p)
    return -(y * np.log(p) + (1 - y) * np.log(np.float32(1) - p))


def view_batch(seed=0, batch=5, classes=7):
    """labels / weights / rated as the rated-segment view builds them."""
    rng = np.random.default_rng(seed)
    rated = rng.random((batch, classes)) < 0.3
    labels = np.where(rated, (rng.random((batch, classes)) < 0.5), 0.0)
    outside = (rng.random((batch, classes)) < 0.5) & ~rated
    outside[0] = False          # an example without mined negatives
    rated[1] = False            # one without rated pairs
    labels[1] = 0.0
    count = np.maximum(outside.sum(axis=1, keepdims=True), 1)
    alpha = 0.8
    weights = np.where(rated, 1.0, np.where(outside, alpha / count, 0.0))
    probabilities = rng.random((batch, classes))
    probabilities[2, 0] = 0.0   # clipped, not infinite
    probabilities[3, 1] = 1.0
    return (labels.astype("float32"), probabilities.astype("float32"),
            weights.astype("float32"), rated, outside)


def test_weighted_per_example_and_mean_match_numpy():
    labels, probabilities, weights, _, _ = view_batch()
    expected = [sum(weights[i, c] * ce(labels[i, c], probabilities[i, c])
                    for c in range(labels.shape[1]))
                for i in range(labels.shape[0])]
    got = losses.weighted_bce_per_example(labels, probabilities, weights)
    assert got.shape == (labels.shape[0],)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(
        losses.weighted_binary_crossentropy(labels, probabilities, weights),
        np.mean(expected), rtol=1e-5)
    unweighted = [sum(ce(labels[i, c], probabilities[i, c])
                      for c in range(labels.shape[1]))
                  for i in range(labels.shape[0])]
    np.testing.assert_allclose(
        losses.weighted_bce_per_example(labels, probabilities), unweighted,
        rtol=1e-5)


def test_mined_negatives_are_the_classes_outside_the_video():
    _, _, weights, rated, outside = view_batch()
    np.testing.assert_array_equal(losses.mined_negatives(weights, rated),
                                  outside)


def seventh_reference(labels, probabilities, weights, rated, pw, nw):
    out = []
    for i in range(labels.shape[0]):
        total, mined = 0.0, []
        for c in range(labels.shape[1]):
            p, y = clip(probabilities[i, c]), labels[i, c]
            if rated[i, c]:
                total -= pw * y * np.log(p) + (1 - y) * np.log(np.float32(1) - p)
            elif weights[i, c] > 0:
                mined.append(np.log(np.float32(1) - p))
        if mined:
            total -= nw * np.mean(mined)
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("pw,nw", [(1.5, 0.5), (1.0, 2.0)])
def test_seventh_place_matches_numpy(pw, nw):
    labels, probabilities, weights, rated, _ = view_batch(seed=1)
    expected = seventh_reference(labels, probabilities, weights, rated, pw, nw)
    got = losses.seventh_place_per_example(labels, probabilities, weights,
                                           rated, positive_weight=pw,
                                           negative_weight=nw)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(
        losses.seventh_place_loss(labels, probabilities, weights, rated,
                                  positive_weight=pw, negative_weight=nw),
        expected.mean(), rtol=1e-5)
    chosen = losses.segment_loss("seventh_place", positive_weight=pw,
                                 negative_weight=nw)
    np.testing.assert_allclose(chosen(labels, probabilities, weights, rated),
                               expected, rtol=1e-5)


def test_rated_only_and_chooser_match_numpy():
    labels, probabilities, weights, rated, _ = view_batch(seed=2)
    expected = [sum(ce(labels[i, c], probabilities[i, c])
                    for c in range(labels.shape[1]) if rated[i, c])
                for i in range(labels.shape[0])]
    np.testing.assert_allclose(
        losses.rated_only_per_example(labels, probabilities, rated), expected,
        rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        losses.segment_loss("rated_only")(labels, probabilities, weights,
                                          rated), expected, rtol=1e-5,
        atol=1e-7)
    np.testing.assert_allclose(
        losses.segment_loss("weighted")(labels, probabilities, weights, rated),
        losses.weighted_bce_per_example(labels, probabilities, weights),
        rtol=1e-6)
    with pytest.raises(ValueError, match="unknown segment loss 'nope'.*"
                                         "weighted, seventh_place, rated_only"):
        losses.segment_loss("nope")


def test_losses_in_tf_function_have_gradients():
    labels, probabilities, weights, rated, _ = view_batch(seed=3)
    logits = tf.Variable(np.log(probabilities + 0.01) - np.log(1.01 - probabilities))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            p = tf.sigmoid(logits)
            total = sum(tf.reduce_sum(losses.segment_loss(name)(
                labels, p, weights, rated)) for name in losses.SEGMENT_LOSSES)
        return tape.gradient(total, logits)

    assert np.all(np.isfinite(step().numpy()))


# ---- soft targets ---------------------------------------------------------

def soft_reference(teacher, student, temperature):
    out = []
    for i in range(teacher.shape[0]):
        total = 0.0
        for c in range(teacher.shape[1]):
            t, s = clip(teacher[i, c]), clip(student[i, c])
            if temperature != 1:
                t = 1 / (1 + np.exp(-np.log(t / (1 - t)) / temperature))
                s = clip(1 / (1 + np.exp(-np.log(s / (1 - s)) / temperature)))
            total += -(t * np.log(s) + (1 - t) * np.log(1 - s))
        out.append(total * temperature ** 2)
    return np.array(out)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_soft_target_loss_matches_numpy(temperature):
    rng = np.random.default_rng(4)
    teacher = rng.random((4, 6)).astype("float32")
    student = rng.random((4, 6)).astype("float32")
    got = soft_targets.soft_target_loss_per_example(teacher, student,
                                                    temperature)
    np.testing.assert_allclose(got, soft_reference(teacher, student,
                                                   temperature), rtol=1e-4)
    masked = soft_targets.soft_target_loss_per_example(
        teacher, student, temperature, mask=np.array([1, 0, 1, 0], bool))
    np.testing.assert_allclose(masked, got.numpy() * [1, 0, 1, 0], rtol=1e-6)


def test_soft_target_gradient_is_zero_at_the_teacher():
    teacher = np.array([[0.2, 0.7, 0.5]], "float32")
    logits = tf.Variable(np.log(teacher / (1 - teacher)))
    with tf.GradientTape() as tape:
        loss = soft_targets.soft_target_loss_per_example(teacher,
                                                         tf.sigmoid(logits))
    np.testing.assert_allclose(tape.gradient(loss, logits), 0.0, atol=1e-5)


def test_teacher_lookup_missing_ids_and_column_order(tmp_path):
    ids = ["vidA:0", "vidA:5", "vidB:10"]
    probs = np.array([[0.1, 0.2, 0.3, 0.4],
                      [0.5, 0.6, 0.7, 0.8],
                      [0.9, 0.25, 0.125, 0.75]], np.float32)
    cache.write_cache(str(tmp_path / "cache"), ids, probs, [3, 7, 11, 2], {})
    lookup = soft_targets.TeacherLookup.from_cache_dir(
        str(tmp_path / "cache"), class_ids=[11, 3, 2])
    columns = [2, 0, 3]
    batch = tf.constant(["vidB:10", "nope:0", "vidA:0", "vidA:5"])
    got, found = lookup(batch)
    np.testing.assert_array_equal(found, [True, False, True, True])
    expected = np.stack([probs[2], np.zeros(4), probs[0], probs[1]])[:, columns]
    np.testing.assert_allclose(got, expected.astype(np.float16), rtol=1e-6)
    assert got.dtype == tf.float32

    # In tf.function, on a [B, S] batch of ids, and through dataset.map.
    grid, grid_found = tf.function(lookup)(tf.constant([["vidA:5", ""],
                                                        ["vidB:10", "vidA:0"]]))
    assert grid.shape == (2, 2, 3)
    np.testing.assert_array_equal(grid_found, [[True, False], [True, True]])
    np.testing.assert_allclose(grid[1, 0], probs[2, columns].astype(np.float16))
    dataset = tf.data.Dataset.from_tensor_slices(
        {"segment_id": batch}).batch(4).map(lookup.add_to_batch)
    element = next(iter(dataset))
    np.testing.assert_allclose(element["teacher_probs"], got)
    np.testing.assert_array_equal(element["teacher_found"], found)

    with pytest.raises(ValueError, match=r"no column for classes \[5, 9\]"):
        soft_targets.TeacherLookup.from_cache_dir(str(tmp_path / "cache"),
                                                  [3, 5, 9])
    with pytest.raises(FileNotFoundError, match="no probability cache at"):
        soft_targets.TeacherLookup.from_cache_dir(str(tmp_path / "empty"), [3])


def test_teacher_lookup_rejects_bad_shapes_and_duplicates():
    with pytest.raises(ValueError, match="do not match"):
        soft_targets.TeacherLookup(["a", "b"], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="duplicates"):
        soft_targets.TeacherLookup(["a", "a"], np.zeros((2, 2)))


# ---- mean teacher ---------------------------------------------------------

def flip_reference(frames, mask):
    out = frames.copy()
    for index in np.ndindex(mask.shape[:-1]):
        positions = np.flatnonzero(mask[index])
        out[index][positions] = frames[index][positions[::-1]]
    return out


def test_time_flip_matches_numpy_with_leading_inner_and_trailing_padding():
    rng = np.random.default_rng(5)
    frames = rng.normal(size=(6, 9, 3)).astype("float32")
    mask = np.array([
        [1, 1, 1, 1, 1, 1, 1, 1, 1],   # no padding
        [1, 1, 1, 1, 0, 0, 0, 0, 0],   # trailing
        [0, 0, 0, 1, 1, 1, 1, 1, 1],   # leading (context window at start)
        [0, 0, 1, 1, 1, 1, 1, 0, 0],   # both
        [0, 1, 0, 1, 1, 0, 1, 0, 0],   # holes
        [0, 0, 0, 0, 0, 0, 0, 0, 0],   # empty
    ], bool)
    got = mean_teacher.time_flip(frames, mask)
    np.testing.assert_array_equal(got, flip_reference(frames, mask))
    # Flipping twice is the identity; dynamic shapes inside tf.function.
    flip = tf.function(mean_teacher.time_flip, input_signature=[
        tf.TensorSpec([None, None, None]), tf.TensorSpec([None, None], tf.bool)])
    np.testing.assert_array_equal(flip(flip(frames, mask), mask), frames)
    # Per-video windows: indices [B, S, W] flipped within their masks.
    index = rng.integers(0, 50, size=(2, 3, 9)).astype("int32")
    window_mask = mask[rng.integers(0, 6, size=(2, 3))]
    flipped = tf.gather(index, mean_teacher.flipped_positions(window_mask),
                        batch_dims=2)
    np.testing.assert_array_equal(
        flipped, flip_reference(index[..., None], window_mask)[..., 0])


def test_mean_teacher_loss_matches_numpy():
    rng = np.random.default_rng(6)
    student = rng.random((3, 5)).astype("float32")
    teacher = rng.random((3, 5)).astype("float32")
    expected = [np.mean([(student[i, c] - teacher[i, c]) ** 2
                         for c in range(5)]) for i in range(3)]
    np.testing.assert_allclose(
        mean_teacher.mean_teacher_loss_per_example(student, teacher), expected,
        rtol=1e-6)


SMALL = {"dbof_cluster_size": 8, "dbof_hidden_size": 6, "moe_num_mixtures": 2}


def test_ema_teacher_matches_numpy_after_updates():
    student = build_model(ModelConfig("DBoF", "MoE", 5, 12, SMALL))
    decay = 0.9
    teacher = mean_teacher.EmaTeacher(student, decay=decay)
    expected = [w.copy() for w in student.get_weights()]
    for a, b in zip(teacher.model.get_weights(), expected):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(7)
    update = tf.function(lambda: teacher.update(student))
    for step in range(3):
        new = [w + rng.normal(size=w.shape).astype(w.dtype)
               for w in student.get_weights()]
        student.set_weights(new)
        if step == 0:
            teacher.update(student)  # eagerly
        else:
            update()
        expected = [decay * e + (1 - decay) * n for e, n in zip(expected, new)]
    for a, b in zip(teacher.model.get_weights(), expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The teacher is a working model of its own.
    rng = np.random.default_rng(8)
    inputs = {"frames": rng.normal(size=(2, 4, 12)).astype("float32"),
              "mask": np.ones((2, 4), bool)}
    assert teacher(inputs).shape == (2, 5)
    assert not teacher.model.trainable_weights
    with pytest.raises(ValueError, match="decay"):
        mean_teacher.EmaTeacher(student, decay=1.5)
