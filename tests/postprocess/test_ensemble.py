"""Weighted cache ensembles and the LightGBM stacker."""

import json
import os
import sys

import numpy as np
import pytest

from command_runner import run_command
from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.postprocess import ensemble
from yt8m_segments.evaluation import metrics
from yt8m_segments.postprocess import stacker

CLASSES = [3, 8, 21, 40]
VIDEO_CLASSES = list(range(50))


def _ids(num_videos, per_video):
    videos = [f"v{i:03d}" for i in range(num_videos)]
    return videos, np.array([f"{v}:{5 * s}" for v in videos
                             for s in range(per_video)])


def make_cache(path, probs, segment_ids, class_ids=CLASSES, videos=None,
               video_probs=None, fingerprint="x"):
    kwargs = {}
    if video_probs is not None:
        kwargs = dict(video_ids=videos, video_probs=video_probs,
                      video_class_ids=VIDEO_CLASSES)
    return cache_lib.write_cache(str(path), segment_ids,
                                 np.asarray(probs, np.float16), class_ids,
                                 {"fingerprint": fingerprint}, **kwargs)


@pytest.fixture
def three_caches(tmp_path):
    rng = np.random.default_rng(0)
    videos, ids = _ids(7, 3)
    paths, arrays, video_arrays = [], [], []
    for i in range(3):
        probs = rng.random((len(ids), len(CLASSES))).astype(np.float16)
        video_probs = rng.random((len(videos), len(VIDEO_CLASSES))).astype(np.float16)
        paths.append(make_cache(tmp_path / f"c{i}", probs, ids, videos=videos,
                                video_probs=video_probs, fingerprint=f"m{i}"))
        arrays.append(probs)
        video_arrays.append(video_probs)
    return paths, arrays, video_arrays, ids, videos


def _reference(arrays, weights):
    total = sum(arrays[i].astype(np.float32) * np.float32(w)
                for i, w in enumerate(weights))
    return (total / np.float32(sum(weights))).astype(np.float16)


def test_weighted_average_matches_numpy_streamed_in_small_blocks(three_caches,
                                                                tmp_path):
    paths, arrays, video_arrays, ids, videos = three_caches
    weights = [0.5, 0.3, 0.2]
    out = ensemble.ensemble_caches(paths, str(tmp_path / "out"), weights,
                                   block_rows=4)  # 21 rows: 6 blocks
    result = cache_lib.ProbabilityCache.open(out)
    assert result.segment_ids.tolist() == ids.tolist()
    assert result.class_ids == CLASSES
    np.testing.assert_allclose(result.segment_probs.astype(np.float32),
                               _reference(arrays, weights).astype(np.float32),
                               atol=1e-3)
    np.testing.assert_allclose(result.video_probs.astype(np.float32),
                               _reference(video_arrays, weights).astype(np.float32),
                               atol=1e-3)
    assert result.video_ids.tolist() == videos
    assert result.meta["weights"] == weights
    assert result.meta["member_fingerprints"] == ["m0", "m1", "m2"]


def test_weights_are_normalised_and_default_to_equal(three_caches, tmp_path):
    paths, arrays, *_ = three_caches
    a = cache_lib.ProbabilityCache.open(
        ensemble.ensemble_caches(paths[:2], str(tmp_path / "a"), [2.0, 2.0]))
    b = cache_lib.ProbabilityCache.open(
        ensemble.ensemble_caches(paths[:2], str(tmp_path / "b")))
    np.testing.assert_array_equal(a.segment_probs, b.segment_probs)
    np.testing.assert_allclose(
        a.segment_probs.astype(np.float32),
        ((arrays[0].astype(np.float32) + arrays[1]) / 2), atol=1e-3)
    with pytest.raises(ValueError, match="non-negative"):
        ensemble.parse_weights("1,-1", 2)
    with pytest.raises(ValueError, match="2 weights for 3 caches"):
        ensemble.parse_weights("1,1", 3)


def test_command_line(three_caches, tmp_path):
    paths, arrays, *_ = three_caches
    result = run_command("ensemble", f"--caches={','.join(paths)}",
                         "--weights=0.5,0.3,0.2",
                         f"--output_cache={tmp_path / 'cli'}")
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["weights"] == [0.5, 0.3, 0.2]
    got = cache_lib.ProbabilityCache.open(str(tmp_path / "cli"))
    np.testing.assert_allclose(got.segment_probs.astype(np.float32),
                               _reference(arrays, [0.5, 0.3, 0.2]).astype(np.float32),
                               atol=1e-3)


def test_mismatched_caches_are_refused_naming_both(three_caches, tmp_path):
    paths, arrays, *_ = three_caches
    videos, ids = _ids(7, 3)
    shuffled = make_cache(tmp_path / "shuffled", arrays[0], ids[::-1])
    other_classes = make_cache(tmp_path / "classes", arrays[0], ids,
                               class_ids=[3, 8, 21, 41])
    shorter = make_cache(tmp_path / "short", arrays[0][:-3], ids[:-3])
    for bad, what in ((shuffled, "segment ids"), (other_classes, "class ids"),
                      (shorter, "different segments")):
        with pytest.raises(ValueError, match=what) as error:
            ensemble.ensemble_caches([paths[0], bad], str(tmp_path / "no"))
        assert paths[0] in str(error.value) and bad in str(error.value)
        assert not os.path.exists(tmp_path / "no" / cache_lib.META)
    result = run_command("ensemble", f"--caches={paths[0]},{other_classes}",
                         f"--output_cache={tmp_path / 'no'}", expect_ok=False)
    assert result.returncode == 1
    assert paths[0] in result.stderr and other_classes in result.stderr
    with pytest.raises(ValueError, match="one of the inputs"):
        ensemble.ensemble_caches(paths, paths[1])


# ---------------------------------------------------------------- stacker

def _stacking_problem(tmp_path, name, seed, num_videos=120):
    """Two models over the same segments: one informative, one noise."""
    rng = np.random.default_rng(seed)
    videos, ids = _ids(num_videos, 4)
    truth = rng.random((len(ids), len(CLASSES))) < 0.3
    good = np.clip(0.35 * truth + 0.65 * rng.random(truth.shape), 0, 1)
    noise = rng.random(truth.shape)
    video_probs = rng.random((num_videos, len(VIDEO_CLASSES))) * 0.1
    paths = [make_cache(tmp_path / f"{name}_good", good, ids, videos=videos,
                        video_probs=video_probs, fingerprint="good"),
             make_cache(tmp_path / f"{name}_noise", noise, ids, videos=videos,
                        video_probs=video_probs, fingerprint="noise")]
    rated = rng.random(truth.shape) < 0.5
    ground_truth = {}
    for row, column in zip(*np.nonzero(rated)):
        ground_truth.setdefault(CLASSES[column], {})[ids[row]] = float(truth[row, column])
    return paths, ground_truth, ids


@pytest.fixture
def trained_stacker(tmp_path):
    """A stacker in tmp_path/stacker, and the test problem's caches."""
    pytest.importorskip("lightgbm")
    train_paths, train_truth, _ = _stacking_problem(tmp_path, "val", 1)
    stacker.train(train_paths, train_truth, str(tmp_path / "stacker"),
                  num_trees=30, min_data_in_leaf=5)
    return _stacking_problem(tmp_path, "test", 2)


def test_stacker_learns_to_trust_the_informative_model(tmp_path,
                                                       trained_stacker):
    test_paths, test_truth, ids = trained_stacker
    config = json.loads((tmp_path / "stacker" / stacker.CONFIG_FILE).read_text())
    assert config["feature_names"] == ["p_0", "p_1", "mean", "std", "max",
                                       "video", "rank"]
    out = stacker.predict(str(tmp_path / "stacker"), test_paths,
                          str(tmp_path / "stacked"), block_rows=50)
    stacked = cache_lib.ProbabilityCache.open(out)
    assert stacked.segment_ids.tolist() == ids.tolist()
    assert stacked.class_ids == CLASSES and stacked.has_videos()
    values = stacked.segment_probs.astype(np.float32)
    assert values.min() >= 0 and values.max() <= 1

    def score(path):
        opened = cache_lib.ProbabilityCache.open(path)
        k = len(ids)
        return metrics.segment_map_at_k(metrics.ranked_from_scores(
            opened.segment_ids, opened.segment_probs, opened.class_ids, k),
            test_truth, k)
    assert score(out) > score(test_paths[1]) + 0.2  # far above the noise model
    assert score(out) > score(test_paths[0]) - 0.05  # about the good model

    with pytest.raises(ValueError, match="trained on 2 caches"):
        stacker.predict(str(tmp_path / "stacker"), test_paths[:1],
                        str(tmp_path / "x"))



def test_a_killed_retrain_leaves_no_stacker_that_loads(tmp_path, trained_stacker,
                                                       monkeypatch):
    """A retrain killed after its new model.txt was written but before its
    stacker.json (here: json.dump raising half-way) must not leave the new
    model beside the old config, which load took as one stacker (found
    while writing bench/kill_points.py), nor a torn file."""
    paths, truth, _ = _stacking_problem(tmp_path, "again", 3)

    def killed(value, handle, **kwargs):
        handle.write(json.dumps(value)[:20])
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(stacker.json, "dump", killed)
    with pytest.raises(KeyboardInterrupt):
        stacker.train(paths, truth, str(tmp_path / "stacker"), num_trees=3,
                      min_data_in_leaf=5)
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        stacker.load(str(tmp_path / "stacker"))
    assert os.listdir(tmp_path / "stacker") == [stacker.MODEL_FILE]

def test_stacker_without_lightgbm_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    with pytest.raises(ImportError, match=r"yt8m_segments\[stacker\]"):
        stacker.train([], {}, str(tmp_path / "s"))


def test_stacker_candidates_score_each_class_top_by_mean_only(
        tmp_path, trained_stacker):
    test_paths, _, ids = trained_stacker

    def predicted(name, candidates):
        return cache_lib.ProbabilityCache.open(stacker.predict(
            str(tmp_path / "stacker"), test_paths, str(tmp_path / name),
            block_rows=50, candidates=candidates)).segment_probs.astype(
                np.float32)
    full = predicted("full", None)
    np.testing.assert_array_equal(predicted("all", len(ids)), full)
    cut = predicted("cut", 25)
    # The candidates: each class's 25 best rows by the models' mean (fp16
    # caches, mean in float32, rounded to fp16 as the selection sees it).
    mean = np.mean([cache_lib.ProbabilityCache.open(p).segment_probs.astype(
        np.float32) for p in test_paths], axis=0).astype(np.float16)
    expected = np.zeros(full.shape, bool)
    for column in range(len(CLASSES)):
        order = np.argsort(-mean[:, column].astype(np.float32), kind="stable")
        expected[order[:25], column] = True
    assert expected.sum() == 25 * len(CLASSES)
    np.testing.assert_array_equal(cut[expected], full[expected])
    assert (cut[~expected] == 0).all() and (full[expected] > 0).all()
    with pytest.raises(ValueError, match="at least 1"):
        stacker.predict(str(tmp_path / "stacker"), test_paths,
                        str(tmp_path / "x"), candidates=0)


@pytest.mark.parametrize("num_columns", [1, 2, 7, 1000, 1025])
def test_descending_order_is_a_stable_argsort(num_columns):
    rng = np.random.default_rng(num_columns)
    # fp16 values: many ties, and exact zeros.
    values = (rng.random((40, num_columns)) ** 6).astype(np.float16).astype(
        np.float32)
    np.testing.assert_array_equal(
        stacker._descending_order(values),  # pylint: disable=protected-access
        np.argsort(-values, axis=1, kind="stable"))
