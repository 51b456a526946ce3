"""Simple, honest references for every stage, in numpy: no number without one.

- Video level: closed-form ridge regression from each video's mean
  dequantized frame to its multi-hot video labels, scored by GAP@k. What a
  pretrained model's video predictions must at least reach.
- Segment level: a logistic regression per segment class on each 5-frame
  window's mean frame, trained on the rated pairs only, scored by MAP@K.
  What a fine-tuned model must clearly beat.

Features are read through the project's views, so the baselines run on any
record files the commands read (frame-level records; video-level records for
the ridge). Everything is streamed in batches except the [N, D] feature
matrices of the rated training segments and of the videos, which are small
next to the frames (1152 floats per video or segment).
"""

import numpy as np

from yt8m_segments.evaluation import metrics
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views


def _masked_mean(frames, mask):
    """Mean of the real frames: uint8 or float [B, T, D], [B, T] -> float32 [B, D]."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        frames = records.dequantize(frames.astype(np.float32))
    weights = np.asarray(mask, np.float32)
    total = np.einsum("btd,bt->bd", frames, weights)
    return total / np.maximum(weights.sum(axis=1, keepdims=True), 1.0)


def video_mean_frames(files, feature_spec, num_classes=records.NUM_CLASSES,
                      max_frames=300, frame_features=True, batch_size=64,
                      input_options=None):
    """(video ids [V], mean frames float32 [V, D], labels bool [V, C]).

    Frame records are averaged over their first `max_frames` frames; 2018
    video-level records (`frame_features=False`) give their stored means.
    """
    input_options = input_options or {}
    if frame_features:
        dataset = views.video_dataset(None, feature_spec, num_classes,
                                      max_frames, batch_size, files=files,
                                      quantized=True, **input_options)
    else:
        dataset = views.video_level_dataset(
            None, feature_spec.video_level(), num_classes, batch_size,
            files=files, **input_options)
    ids, means, labels = [], [], []
    for batch in reader.iterate(dataset, files):
        ids.append(batch["id"].numpy().astype(str))
        means.append(_masked_mean(batch["frames"].numpy(),
                                  batch["mask"].numpy()))
        labels.append(batch["labels"].numpy() > 0)
    if not ids:
        raise ValueError(f"no video in {list(files)}")
    return np.concatenate(ids), np.concatenate(means), np.concatenate(labels)


class Ridge:
    """Multi-output ridge regression on centred inputs and targets.

    W = (Xc' Xc + lambda I)^-1 Xc' Yc, b = mean(Y) - mean(X) W. Only the label
    columns seen in training are fitted; the others predict their mean, 0.
    """

    def __init__(self, l2=100.0):
        self.l2 = l2

    def fit(self, features, targets):
        features = np.asarray(features, np.float64)
        targets = np.asarray(targets, np.float64)
        self.columns = np.flatnonzero(targets.any(axis=0))
        self.num_outputs = targets.shape[1]
        self.feature_mean = features.mean(axis=0)
        self.target_mean = targets[:, self.columns].mean(axis=0)
        centred = features - self.feature_mean
        gram = centred.T @ centred + self.l2 * np.eye(features.shape[1])
        self.weights = np.linalg.solve(
            gram, centred.T @ (targets[:, self.columns] - self.target_mean))
        return self

    def predict(self, features):
        """[N, D] -> scores float32 [N, num_outputs]."""
        scores = np.zeros((len(features), self.num_outputs), np.float32)
        scores[:, self.columns] = ((np.asarray(features, np.float64)
                                    - self.feature_mean) @ self.weights
                                   + self.target_mean)
        return scores


def rated_window_means(files, feature_spec, segment_class_ids,
                       vocabulary_size=records.NUM_CLASSES, batch_size=256,
                       input_options=None):
    """(segment ids [N], window means [N, D], labels [N, C], rated bool [N, C])
    of the rated 5-frame segments of validate records."""
    dataset = views.rated_segment_dataset(
        None, feature_spec, segment_class_ids, batch_size,
        vocabulary_size=vocabulary_size, files=files, quantized=True,
        **(input_options or {}))
    ids, means, labels, rated = [], [], [], []
    for batch in reader.iterate(dataset, files):
        ids.append(batch["segment_id"].numpy().astype(str))
        means.append(_masked_mean(batch["frames"].numpy(),
                                  batch["mask"].numpy()))
        labels.append(batch["labels"].numpy())
        rated.append(batch["rated"].numpy())
    if not ids:
        raise ValueError(f"no rated segment in {list(files)}")
    return (np.concatenate(ids), np.concatenate(means),
            np.concatenate(labels), np.concatenate(rated))


def window_scores(files, feature_spec, score, batch_size=1024,
                       input_options=None):
    """(segment ids [N], `score(window means [b, D])` stacked [N, C]) over
    every 5-frame window of `files`, streamed batch by batch."""
    dataset = views.test_segment_dataset(None, feature_spec, batch_size,
                                         files=files, quantized=True,
                                         **(input_options or {}))
    ids, scores = [], []
    for batch in reader.iterate(dataset, files):
        ids.append(batch["segment_id"].numpy().astype(str))
        scores.append(score(_masked_mean(batch["frames"].numpy(),
                                         batch["mask"].numpy())))
    if not ids:
        raise ValueError(f"no video in {list(files)}")
    return np.concatenate(ids), np.concatenate(scores)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class RatedLogistic:
    """One logistic regression per class on standardised window means,
    trained by full-batch Adam on the rated pairs only (unrated pairs carry
    no loss), with an L2 penalty on the weights."""

    def __init__(self, l2=1e-2, steps=300, learning_rate=0.05):
        self.l2 = l2
        self.steps = steps
        self.learning_rate = learning_rate

    def fit(self, features, labels, rated):
        x = np.asarray(features, np.float64)
        self.mean = x.mean(axis=0)
        self.scale = x.std(axis=0) + 1e-6
        x = (x - self.mean) / self.scale
        y = np.asarray(labels, np.float64)
        w_rated = np.asarray(rated, np.float64)
        count = np.maximum(w_rated.sum(axis=0), 1.0)  # per class
        weights = np.zeros((x.shape[1], y.shape[1]))
        bias = np.zeros(y.shape[1])
        params = [weights, bias]
        moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
        for step in range(1, self.steps + 1):
            error = (_sigmoid(x @ weights + bias) - y) * w_rated / count
            grads = [x.T @ error + self.l2 * weights, error.sum(axis=0)]
            for param, grad, (m, v) in zip(params, grads, moments):
                m += 0.1 * (grad - m)
                v += 0.001 * (grad * grad - v)
                m_hat = m / (1 - 0.9 ** step)
                v_hat = v / (1 - 0.999 ** step)
                param -= self.learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)
        self.weights, self.bias = weights, bias
        return self

    def predict(self, features):
        """[N, D] window means -> probabilities float32 [N, C]."""
        x = (np.asarray(features, np.float64) - self.mean) / self.scale
        return _sigmoid(x @ self.weights + self.bias).astype(np.float32)


def segment_map(segment_ids, scores, class_ids, ground_truth, k):
    """MAP@k of [N, C] window scores, ranked per class as a submission."""
    ranked = metrics.ranked_from_scores(segment_ids, scores, class_ids, k)
    return metrics.segment_map_at_k(ranked, ground_truth, k)


def matched_filter(patterns, class_ids):
    """The generator's oracle: score(window mean) = mean . p_c for the true
    pattern p_c of each class (synthetic.class_patterns); [b, D] -> [b, C]."""
    matrix = np.stack([patterns[int(c)] for c in class_ids], axis=1)
    return lambda means: (means @ matrix).astype(np.float32)


def random_map(segment_ids, class_ids, ground_truth, k, seed=0):
    """MAP@k of uniform random scores: the floor."""
    scores = np.random.default_rng(seed).random(
        (len(segment_ids), len(class_ids)), dtype=np.float32)
    return segment_map(segment_ids, scores, class_ids, ground_truth, k)


def reference_table(train_files, validate_files, test_files, ground_truth,
                    feature_spec, segment_class_ids, k=None, gap_k=20,
                    patterns=None, input_options=None):
    """Every reference number for one dataset, as {row name: value}.

    Video level, GAP@gap_k on the validate videos: the label prior and the
    ridge (fitted on the train videos). Segment level, MAP@K on the rated
    test segments of `ground_truth` (K scaled to the test windows when None):
    random, the window-mean logistic (fitted on the rated validate
    segments), and with `patterns` ({class: pattern}, synthetic data only)
    the matched-filter oracle. Also returns K as "K".
    """
    read = {"input_options": input_options}
    _, train_x, train_y = video_mean_frames(train_files, feature_spec, **read)
    _, eval_x, eval_y = video_mean_frames(validate_files, feature_spec, **read)
    prior = train_y.mean(axis=0, dtype=np.float64).astype(np.float32)
    table = {
        "video: label prior": metrics.gap_at_k(
            np.broadcast_to(prior, eval_y.shape), eval_y, gap_k),
        "video: ridge on mean frame": metrics.gap_at_k(
            Ridge().fit(train_x, train_y).predict(eval_x), eval_y, gap_k),
    }
    _, rated_x, rated_y, rated = rated_window_means(
        validate_files, feature_spec, segment_class_ids, input_options=input_options)
    logistic = RatedLogistic().fit(rated_x, rated_y, rated)
    segment_ids, scores = window_scores(test_files, feature_spec,
                                             logistic.predict,
                                             input_options=input_options)
    k = k or metrics.scaled_k(len(segment_ids))
    table["segment: random"] = random_map(segment_ids, segment_class_ids,
                                          ground_truth, k)
    table["segment: window-mean logistic"] = segment_map(
        segment_ids, scores, segment_class_ids, ground_truth, k)
    if patterns is not None:
        _, oracle = window_scores(
            test_files, feature_spec, matched_filter(patterns, segment_class_ids),
            input_options=input_options)
        table["segment: oracle (true patterns)"] = segment_map(
            segment_ids, oracle, segment_class_ids, ground_truth, k)
    table["K"] = k
    return table
