"""Tests for the synthetic dataset generator: format, ratings, determinism, signal."""

import csv
import glob
import hashlib
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from command_runner import run_command

from yt8m_segments.data import synthetic
from yt8m_segments.data import records

SEED = 7
OPTIONS = dict(num_classes=120, num_active_classes=12, num_segment_classes=6,
               min_frames=20, max_frames=40, num_files_per_split=2)
SIZES = dict(num_train_videos=30, num_validate_videos=40, num_test_videos=25)

_CONTEXT = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "labels": tf.io.VarLenFeature(tf.int64),
    "segment_start_times": tf.io.VarLenFeature(tf.int64),
    "segment_end_times": tf.io.VarLenFeature(tf.int64),
    "segment_labels": tf.io.VarLenFeature(tf.int64),
    "segment_scores": tf.io.VarLenFeature(tf.float32),
}
_SEQUENCE = {
    "rgb": tf.io.FixedLenSequenceFeature([], tf.string),
    "audio": tf.io.FixedLenSequenceFeature([], tf.string),
}


def _generate(path, seed=SEED):
    return synthetic.generate(str(path), seed=seed, **SIZES, **OPTIONS)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth")
    return path, _generate(path)


def _read_split(path, split):
    videos = []
    for name in sorted(glob.glob(os.path.join(path, f"{split}-*.tfrecord"))):
        for raw in tf.data.TFRecordDataset(name):
            context, sequence = tf.io.parse_single_sequence_example(
                raw, context_features=_CONTEXT, sequence_features=_SEQUENCE)
            rgb_bytes = sequence["rgb"].numpy()
            audio_bytes = sequence["audio"].numpy()
            video = {key: context[key].values.numpy() for key in _CONTEXT
                     if key != "id"}
            video.update(id=context["id"].numpy().decode(),
                         rgb_bytes=rgb_bytes, audio_bytes=audio_bytes)
            video["frames"] = records.dequantize(np.concatenate(
                [np.frombuffer(b"".join(rgb_bytes), np.uint8).reshape(-1, 1024),
                 np.frombuffer(b"".join(audio_bytes), np.uint8).reshape(-1, 128)],
                axis=1).astype(np.float32))
            videos.append(video)
    return videos


def _videos(count, rated=False, **options):
    """`count` videos straight from `_make_video`, in the world of OPTIONS."""
    opts = synthetic._options(dict(OPTIONS, **options))
    world = synthetic._make_world(synthetic._streams(SEED)[0], opts)
    rng = np.random.default_rng(SEED)
    return [synthetic._make_video(rng, world, opts, rated, None)
            for _ in range(count)]


def _frames(video):
    return records.dequantize(video["frames"].astype(np.float32))


def _unit_patterns(**options):
    patterns = synthetic.class_patterns(SEED, **OPTIONS, **options)
    return {c: p / np.linalg.norm(p) for c, p in patterns.items()}


def _segment_ids(path):
    with open(os.path.join(path, "segment_label_ids.csv")) as handle:
        lines = handle.read().splitlines()
    assert lines[0] == "Index"
    return [int(x) for x in lines[1:]]


def test_file_names(dataset):
    path, summary = dataset
    expected = {f"{split}-{i:05d}-of-00002.tfrecord"
                for split in ("train", "validate", "test") for i in range(2)}
    expected |= {"vocabulary.csv", "segment_label_ids.csv", "test_ground_truth.csv",
                 synthetic.GENERATOR_FILE}
    assert set(os.listdir(path)) == expected  # no .tmp leftovers either
    assert summary["train"]["files"] == sorted(
        n for n in expected if n.startswith("train-"))


def test_records_parse_with_real_layout(dataset):
    path, summary = dataset
    active = set(summary["active_class_ids"])
    for split in ("train", "validate", "test"):
        videos = _read_split(path, split)
        assert len(videos) == SIZES[f"num_{split}_videos"]
        assert sum(len(v["rgb_bytes"]) for v in videos) == summary[split]["frames"]
        for v in videos:
            n = len(v["rgb_bytes"])
            assert OPTIONS["min_frames"] <= n <= OPTIONS["max_frames"]
            assert len(v["audio_bytes"]) == n
            assert all(len(b) == 1024 for b in v["rgb_bytes"])
            assert all(len(b) == 128 for b in v["audio_bytes"])
            if split == "train":
                assert len(v["labels"]) >= 1 and set(v["labels"]) <= active
            if split == "test":
                assert len(v["labels"]) == 0
            if split != "validate":
                assert len(v["segment_start_times"]) == 0


def test_video_ids_unique_across_splits(dataset):
    path, _ = dataset
    ids = [v["id"] for s in ("train", "validate", "test")
           for v in _read_split(path, s)]
    assert len(ids) == len(set(ids)) == sum(SIZES.values())
    assert all(re.fullmatch(r"[A-Za-z0-9]{4}", i) for i in ids)


def test_validate_ratings(dataset):
    path, summary = dataset
    segment_ids = _segment_ids(path)
    assert sorted(segment_ids) == summary["segment_class_ids"]
    assert len(set(segment_ids)) == OPTIONS["num_segment_classes"]
    scores, positive_classes = [], set()
    for v in _read_split(path, "validate"):
        starts, n = v["segment_start_times"], len(v["rgb_bytes"])
        assert 1 <= len(starts) <= 6
        assert len(v["segment_labels"]) == len(v["segment_scores"]) == len(starts)
        assert np.all(starts % 5 == 0) and np.all(starts + 5 <= n)
        np.testing.assert_array_equal(v["segment_end_times"], starts + 5)
        assert set(v["segment_labels"]) <= set(segment_ids)
        assert set(v["segment_scores"]) <= {0.0, 1.0}
        pairs = list(zip(starts, v["segment_labels"]))
        assert len(pairs) == len(set(pairs))  # each pair rated once
        scores += list(v["segment_scores"])
        positive_classes |= {c for c, s in zip(v["segment_labels"],
                                                v["segment_scores"]) if s}
    scores = np.array(scores)
    assert 0.3 <= scores.mean() <= 0.7
    assert positive_classes == set(segment_ids)
    assert summary["validate"]["positives"] == int(scores.sum())
    assert summary["validate"]["negatives"] == int((scores == 0).sum())


def test_ground_truth_refers_to_test_videos(dataset):
    path, summary = dataset
    lengths = {v["id"]: len(v["rgb_bytes"]) for v in _read_split(path, "test")}
    segment_ids = set(_segment_ids(path))
    with open(os.path.join(path, "test_ground_truth.csv"), newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["segment_id", "class", "score"]
    positives = set()
    for segment_id, cls, score in rows[1:]:
        video_id, start = segment_id.split(":")
        start = int(start)
        assert video_id in lengths
        assert start % 5 == 0 and start + 5 <= lengths[video_id]
        assert int(cls) in segment_ids
        assert score in ("1.0", "0.0")
        if score == "1.0":
            positives.add(int(cls))
    assert positives == segment_ids
    assert len(rows) - 1 == summary["test"]["positives"] + summary["test"]["negatives"]
    assert len({tuple(r[:2]) for r in rows[1:]}) == len(rows) - 1


def test_vocabulary(dataset):
    path, summary = dataset
    with open(os.path.join(path, "vocabulary.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0].keys()) == list(synthetic.VOCABULARY_COLUMNS)
    assert len(synthetic.VOCABULARY_COLUMNS) == 9
    assert [int(r["Index"]) for r in rows] == list(range(OPTIONS["num_classes"]))
    assert all("," in r["WikiDescription"] for r in rows)  # quoting round-trips
    counts = {int(r["Index"]): int(r["TrainVideoCount"]) for r in rows}
    expected = {c: 0 for c in counts}
    for v in _read_split(path, "train"):
        for c in v["labels"]:
            expected[int(c)] += 1
    assert counts == expected
    assert {c for c, n in counts.items() if n} <= set(summary["active_class_ids"])


def test_deterministic_per_seed(dataset, tmp_path):
    path, _ = dataset
    same, other = tmp_path / "same", tmp_path / "other"
    _generate(same)
    _generate(other, seed=SEED + 1)
    for name in os.listdir(path):
        with open(os.path.join(path, name), "rb") as a, open(same / name, "rb") as b:
            assert a.read() == b.read(), name
    for name in ("train-00000-of-00002.tfrecord", "test_ground_truth.csv"):
        with open(os.path.join(path, name), "rb") as a, open(other / name, "rb") as b:
            assert a.read() != b.read(), name


def test_planted_signal(dataset):
    """Rated positive windows project onto their class pattern more than negatives."""
    path, _ = dataset
    patterns = synthetic.class_patterns(SEED, **OPTIONS)
    rng = np.random.default_rng(0)
    random_direction = rng.standard_normal(synthetic.FEATURE_SIZE)
    windows, directions, scores = [], [], []
    for v in _read_split(path, "validate"):
        for start, cls, score in zip(v["segment_start_times"],
                                     v["segment_labels"], v["segment_scores"]):
            windows.append(v["frames"][start:start + 5].mean(axis=0))
            directions.append(patterns[int(cls)])
            scores.append(score)
    windows, scores = np.array(windows), np.array(scores) == 1.0

    def auc(projection):
        pos, neg = projection[scores], projection[~scores]
        return (pos[:, None] > neg[None, :]).mean()

    assert auc(np.einsum("nd,nd->n", windows, np.array(directions))) > 0.8
    # A random direction separates nothing: the signal is the planted one.
    assert 0.3 < auc(windows @ random_direction) < 0.7


def test_confusable_groups_share_patterns():
    patterns = synthetic.class_patterns(SEED, **OPTIONS)
    world = synthetic._make_world(synthetic._streams(SEED)[0],
                                  synthetic._options(OPTIONS))
    ids = world["active"]
    unit = {c: p / np.linalg.norm(p) for c, p in patterns.items()}
    for group in world["groups"]:
        assert len(group) >= 2
        a, b = ids[group[0]], ids[group[1]]
        assert unit[a] @ unit[b] > 0.4  # alike ...
        assert unit[a] @ unit[b] < 0.8  # ... but distinguishable


def test_unknown_option_rejected(tmp_path):
    with pytest.raises(TypeError):
        synthetic.generate(str(tmp_path), 1, 1, 1, 0, num_clases=10)


def test_command_line(tmp_path):
    """The command's flags reach the generator (--min/max_video_frames are
    its min_frames / max_frames)."""
    run_command(
        "synthetic", f"--output_dir={tmp_path}", "--num_train_videos=3",
        "--num_validate_videos=6", "--num_test_videos=6", "--seed=3",
        "--num_classes=50", "--num_active_classes=6",
        "--num_segment_classes=3", "--num_files_per_split=1",
        "--noise_std=0.5", "--full_video_prob=0.5", "--min_video_frames=12",
        "--max_video_frames=14")
    seed, options = synthetic.read_generator_file(
        str(tmp_path / synthetic.GENERATOR_FILE))
    assert seed == 3
    assert options == dict(synthetic.DEFAULTS, num_classes=50,
                           num_active_classes=6, num_segment_classes=3,
                           num_files_per_split=1, noise_std=0.5,
                           full_video_prob=0.5, min_frames=12, max_frames=14)
    names = set(os.listdir(tmp_path))
    assert "validate-00000-of-00001.tfrecord" in names
    assert "vocabulary.csv" in names
    assert "--output_dir is required" in run_command(
        "synthetic", expect_ok=False).stderr


def _digest(path):
    """sha256 over sorted file names and contents (generator.json, written
    since, left out).

    Records are hashed as their protos re-serialized deterministically:
    protobuf writes map entries (feature names) in a per-process order, so
    the raw record bytes differ between runs even for equal contents.
    """
    digest = hashlib.sha256()
    for name in sorted(set(os.listdir(path)) - {synthetic.GENERATOR_FILE}):
        digest.update(name.encode() + b"\0")
        file = os.path.join(path, name)
        if not name.endswith(".tfrecord"):
            with open(file, "rb") as handle:
                digest.update(handle.read())
            continue
        proto = tf.train.Example if "_video-" in name else tf.train.SequenceExample
        for raw in tf.data.TFRecordDataset(file).as_numpy_iterator():
            data = proto.FromString(raw).SerializeToString(deterministic=True)
            digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


_EXPLICIT_DEFAULTS = dict(signal_strength=1.0, noise_std=0.3,
                          background_std=0.35, shared_fraction=0.6,
                          label_drop_prob=0.15, spurious_label_prob=0.2,
                          full_video_prob=0.0)


@pytest.mark.parametrize("video_level, options, expected", [
    (False, {},
     "2799bed56d9ff9e0b0b496d438199d6720b0a8e1aeba45faa57b9f27a1ed418c"),
    (True, _EXPLICIT_DEFAULTS,
     "36c3010979b35b444ea82c3b98ae73547c47cbcb16dccb0270abe4637380bd6e"),
], ids=["frames", "video_level_explicit_defaults"])
def test_defaults_byte_identical_to_before_the_knobs(tmp_path, video_level,
                                                     options, expected):
    """Defaults are byte-identical to before the knobs existed.

    The hashes were taken with the generator before the difficulty options
    were added; datasets and reference numbers made then stay reproducible.
    """
    synthetic.generate(str(tmp_path), 30, 12, 10, seed=3,
                       video_level=video_level, num_active_classes=10,
                       num_segment_classes=5, min_frames=20, max_frames=40,
                       num_files_per_split=1, **options)
    assert _digest(tmp_path) == expected


def test_weak_signal_lowers_positive_projection():
    unit = _unit_patterns()

    def mean_positive_projection(**options):
        projections = [_frames(v)[start:start + 5].mean(axis=0) @ unit[c]
                       for v in _videos(40, rated=True, **options)
                       for start, c, score in v["rated"] if score]
        return np.mean(projections)

    strong = mean_positive_projection()
    weak = mean_positive_projection(signal_strength=0.3)
    assert strong > 1.0
    assert weak < 0.5 * strong


def test_no_label_noise_labels_are_the_entities():
    def mismatches(**options):
        return sum(set(v["labels"]) != set(v["entities"])
                   for v in _videos(60, **options))

    assert mismatches() > 0  # the default labels are noisy ...
    assert mismatches(label_drop_prob=0.0, spurious_label_prob=0.0) == 0


def test_noise_free_background_only_frames_are_zero():
    """The partial last window holds no entity: only background and noise."""
    zero = records.quantize(np.zeros(synthetic.FEATURE_SIZE))

    def noisy_tails(**options):
        tails = [v["frames"][v["num_frames"] // 5 * 5:]
                 for v in _videos(30, **options)]
        assert sum(len(t) for t in tails) > 0
        return sum(int((t != zero).any()) for t in tails)

    assert noisy_tails() > 0
    assert noisy_tails(noise_std=0.0, background_std=0.0) == 0


@pytest.mark.parametrize("fraction", [0.0, 0.9])
def test_shared_fraction_sets_mate_cosine(fraction):
    unit = _unit_patterns(shared_fraction=fraction)
    world = synthetic._make_world(
        synthetic._streams(SEED)[0],
        synthetic._options(dict(OPTIONS, shared_fraction=fraction)))
    ids = world["active"]
    cosines = [unit[ids[g[0]]] @ unit[ids[g[1]]] for g in world["groups"]]
    assert abs(np.mean(cosines) - fraction) < 0.1


def test_full_video_prob_fills_every_window():
    """Noise-free, a window shows its first entity iff it projects onto it."""
    clean = dict(noise_std=0.0, background_std=0.0)
    unit = _unit_patterns()

    def first_entity_windows(**options):
        for v in _videos(30, **clean, **options):
            span = v["num_frames"] // 5 * 5
            windows = _frames(v)[:span].reshape(span // 5, 5, -1).mean(axis=1)
            yield windows @ unit[v["entities"][0]]

    assert min(w.min() for w in first_entity_windows()) < 0.1  # runs only
    assert min(w.min() for w in first_entity_windows(full_video_prob=1.0)) > 0.5


def test_full_video_prob_keeps_ratings(tmp_path):
    options = dict(OPTIONS, num_files_per_split=1, full_video_prob=1.0)
    summary = synthetic.generate(str(tmp_path), 0, 12, 10, seed=SEED, **options)
    for split in ("validate", "test"):
        assert summary[split]["min_positives_per_segment_class"] >= 1
        assert summary[split]["negatives"] > 0


@pytest.mark.parametrize("name, value", [
    ("noise_std", -0.1), ("background_std", -1.0), ("signal_strength", 0.0),
    ("signal_strength", -1.0), ("label_drop_prob", 1.5),
    ("spurious_label_prob", -0.1), ("full_video_prob", 2.0),
    ("shared_fraction", -0.1), ("shared_fraction", 1.1),
])
def test_bad_option_values_rejected(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        synthetic.generate(str(tmp_path), 1, 1, 1, 0, **{name: value})


def test_generator_file_gives_the_oracle_patterns(dataset):
    """generator.json is all the oracle needs: the same class patterns."""
    path, _ = dataset
    seed, options = synthetic.read_generator_file(
        os.path.join(path, synthetic.GENERATOR_FILE))
    assert seed == SEED
    expected = synthetic.class_patterns(SEED, **OPTIONS)
    got = synthetic.class_patterns(seed, **options)
    assert sorted(got) == sorted(expected)
    for class_id, pattern in expected.items():
        np.testing.assert_array_equal(got[class_id], pattern)
