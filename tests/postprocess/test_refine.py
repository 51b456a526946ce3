"""Refinement modes against slow loop references; selection over a refined cache."""

import numpy as np
import pytest

from yt8m_segments.postprocess import cache
from yt8m_segments.postprocess import refine
from yt8m_segments.postprocess import submission

NUM_VIDEOS, NUM_VOCAB = 10, 40


def _world(seed=0):
    """Segments of 10 videos; fp16 video probabilities all distinct (no ties)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, NUM_VIDEOS)
    rows = np.repeat(np.arange(NUM_VIDEOS), counts)
    video_class_ids = rng.permutation(100)[:NUM_VOCAB]
    class_ids = rng.permutation(video_class_ids)[:12]
    grid = 0.5 + np.arange(1024) / 2048.0  # distinct float16 values in [0.5, 1)
    video = rng.permutation(grid)[:NUM_VIDEOS * NUM_VOCAB].reshape(
        NUM_VIDEOS, NUM_VOCAB).astype(np.float16)
    seg = rng.random((len(rows), len(class_ids))).astype(np.float16)
    return seg, class_ids, rows, video, video_class_ids


def _reference(seg, class_ids, rows, video, video_class_ids, options):
    modes = refine.parse_modes(options.mode)
    vcol = {int(c): i for i, c in enumerate(video_class_ids)}
    out = seg.astype(np.float32).copy()
    for j, c in enumerate(class_ids):
        col = vcol[int(c)]
        best_videos = sorted(range(len(video)), key=lambda v: (-float(video[v, col]), v))
        best_videos = set(best_videos[:options.videos_per_class])
        for i, v in enumerate(rows):
            keep = True
            if "topk" in modes:
                ranked = sorted(range(video.shape[1]),
                                key=lambda k: (-float(video[v, k]), k))
                keep &= col in ranked[:options.topk]
            if "confidence" in modes:
                keep &= float(video[v, col]) > options.threshold
            if "video_num" in modes:
                keep &= v in best_videos
            if "fusion" in modes:
                b = options.fusion_weight
                out[i, j] = float(video[v, col]) ** b * float(seg[i, j]) ** (1 - b)
            if not keep:
                out[i, j] = -1.0
    return out


MODES = [
    refine.RefineOptions("none"),
    refine.RefineOptions("topk", topk=5),
    refine.RefineOptions("confidence", threshold=0.75),
    refine.RefineOptions("video_num", videos_per_class=3),
    refine.RefineOptions("fusion", fusion_weight=0.3),
    refine.RefineOptions("topk,fusion", topk=8, fusion_weight=0.05),
    refine.RefineOptions("confidence,video_num", threshold=0.6, videos_per_class=4),
]


@pytest.mark.parametrize("options", MODES, ids=lambda o: o.mode)
def test_refinement_matches_the_loop_reference(options):
    seg, class_ids, rows, video, video_class_ids = _world()
    got = refine.refine_dense(seg, class_ids, rows, video, video_class_ids, options)
    want = _reference(seg, class_ids, rows, video, video_class_ids, options)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    if options.mode != "none" and "fusion" not in options.mode:
        assert (got == -1).any() and (got >= 0).any()


def test_row_blocks_equal_whole():
    seg, class_ids, rows, video, video_class_ids = _world(1)
    options = refine.RefineOptions("topk,fusion", topk=6)
    refiner = refine.Refiner(options, class_ids, rows, video, video_class_ids)
    whole = refine.refine_dense(seg, class_ids, rows, video, video_class_ids, options)
    for segment_rows in (slice(2, 9), np.array([7, 0, 3])):
        np.testing.assert_array_equal(
            refiner.scores(seg[segment_rows], segment_rows), whole[segment_rows])


@pytest.mark.parametrize("seed", range(4))
def test_top_columns_is_a_stable_top_k_per_row(seed):
    rng = np.random.default_rng(seed)
    num_rows, n = int(rng.integers(0, 40)), int(rng.integers(1, 700))
    keys = rng.integers(-3, [3, 40, 30000][seed % 3], (num_rows, n)).astype(np.int16)
    for k in (1, 5, 20, n, n + 3):
        row, column = refine.top_columns(keys, k)
        want = np.argsort(-keys.astype(np.int32), axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(row, np.repeat(np.arange(num_rows), want.shape[1]))
        np.testing.assert_array_equal(column, want.ravel())


def test_bad_modes_and_missing_classes_are_clear():
    with pytest.raises(ValueError, match="unknown refinement"):
        refine.parse_modes("topk,best")
    with pytest.raises(ValueError, match="cannot be combined"):
        refine.parse_modes("none,topk")
    seg, class_ids, rows, video, video_class_ids = _world()
    with pytest.raises(ValueError, match="no column for segment classes"):
        refine.Refiner(refine.RefineOptions("topk"), [999], rows, video,
                       video_class_ids)


def _cache_of_world(path, seed=0):
    seg, class_ids, rows, video, video_class_ids = _world(seed)
    video_ids = [f"v{v:03d}" for v in range(NUM_VIDEOS)]
    starts = np.concatenate([np.arange(np.sum(rows == v)) * 5
                             for v in range(NUM_VIDEOS)])
    segment_ids = [f"{video_ids[v]}:{s}" for v, s in zip(rows, starts)]
    cache.write_cache(path, segment_ids, seg, class_ids, {"fingerprint": "x"},
                      video_ids, video, video_class_ids)
    return cache.ProbabilityCache.open(path), (seg, class_ids, rows, video,
                                               video_class_ids)


@pytest.mark.parametrize("sample_rows", [None, 4])
@pytest.mark.parametrize("mode", ["none", "topk", "video_num", "topk,fusion"])
def test_selection_from_refined_cache_equals_dense(tmp_path, monkeypatch, mode,
                                                   sample_rows):
    """Also with thresholds sampled from a few rows (fallback passes where
    they misjudge a class, dropped rows topping up short classes)."""
    if sample_rows:
        monkeypatch.setattr(submission, "SAMPLE_ROWS", sample_rows)
        monkeypatch.setattr(submission, "SAMPLE_RUN", 2)
        monkeypatch.setattr(submission, "L2_SCORES", 30)  # steps of 2 rows
    opened, world = _cache_of_world(str(tmp_path / "c"))
    options = refine.RefineOptions(mode, topk=6, videos_per_class=4)
    np.testing.assert_array_equal(opened.segment_video_rows(), world[2])
    dense = refine.refine_dense(*world, options)
    k = 9
    want = submission.top_k_per_class(dense, k)
    refiner = refine.refiner_for_cache(opened, options)
    got = submission.top_k_per_class(opened.segment_reader(), k, chunk_rows=5,
                                     refiner=refiner)
    np.testing.assert_array_equal(got, want)
    # The CSV through the cache (chunks of 2 rows).
    csv_path = str(tmp_path / "s.csv")
    submission.write_submission(csv_path, opened.segment_ids,
                                opened.segment_reader(), opened.class_ids, k,
                                chunk_rows=2, refiner=refiner)
    ranked = submission.read_submission(csv_path)
    for c, class_id in enumerate(opened.class_ids):
        assert ranked[class_id] == opened.segment_ids[want[c]].tolist()
    csv_path2 = str(tmp_path / "s2.csv")
    submission.write_submission_from_cache(csv_path2, opened, k, options)
    assert open(csv_path2).read() == open(csv_path).read()


def test_refining_a_cache_without_videos_is_refused(tmp_path):
    cache.write_cache(str(tmp_path / "c"), ["a:0", "a:5"],
                      np.ones((2, 3), np.float16), [1, 2, 3], {})
    opened = cache.ProbabilityCache.open(str(tmp_path / "c"))
    with pytest.raises(ValueError, match="video_train_dir"):
        refine.refiner_for_cache(opened, refine.RefineOptions("topk"))
    assert refine.refiner_for_cache(opened, refine.RefineOptions("none")) is None


@pytest.mark.parametrize("options", MODES, ids=lambda o: o.mode)
def test_ranked_from_cache_is_the_dense_selection_less_dropped_pairs(tmp_path, options):
    opened, world = _cache_of_world(str(tmp_path / "c"))
    dense = refine.refine_dense(*world, options)
    k = 9
    ranked = refine.ranked_from_cache(opened, k, options)
    for c, rows in enumerate(submission.top_k_per_class(dense, k)):
        kept = rows[dense[rows, c] > refine.DROPPED]
        assert ranked[int(opened.class_ids[c])] == opened.segment_ids[kept].tolist()


def test_videos_fraction_is_a_share_of_the_videos():
    world = _world(2)
    by_share = refine.RefineOptions("video_num", videos_fraction=0.3)
    by_count = refine.RefineOptions("video_num", videos_per_class=3)
    assert by_share.videos_kept(NUM_VIDEOS) == 3
    np.testing.assert_array_equal(refine.refine_dense(*world, by_share),
                                  refine.refine_dense(*world, by_count))
    assert by_share.parameters == "videos_fraction=0.3"
    assert by_count.parameters == "videos_per_class=3"
    assert refine.RefineOptions("topk,fusion", topk=8).parameters == (
        "topk=8,fusion_weight=0.05")
    assert refine.RefineOptions("none").parameters == ""
    with pytest.raises(ValueError, match="refine_videos_fraction"):
        refine.RefineOptions("video_num", videos_fraction=1.5).videos_kept(10)
