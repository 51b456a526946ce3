"""Context windows, per-video windows, frame sampling and folds."""

import numpy as np
import pytest

from conftest import frames_with_values
from yt8m_segments.data import parsing
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec

SPEC = FeatureSpec()


def rgb_values(frames):
    """Recover the quantized rgb value of each frame (frames_with_values)."""
    return np.round((frames[..., 0] - (4 / 512 - 2)) * 255 / 4).astype(int)


@pytest.fixture
def two_videos(write_videos):
    return write_videos([
        dict(video_id="long", labels=[1], features=frames_with_values(23),
             segment_start_times=[5, 20], segment_labels=[1, 2],
             segment_scores=[1.0, 0.0]),
        dict(video_id="shrt", labels=[2], features=frames_with_values(7, 100),
             segment_start_times=[0], segment_labels=[2],
             segment_scores=[1.0]),
    ])


def test_context_windows_clip_at_the_edges(two_videos):
    batch = next(iter(views.test_segment_dataset(two_videos, SPEC, 100,
                                                 context_frames=3)))
    ids = [s.decode() for s in batch["segment_id"].numpy()]
    assert ids == ["long:0", "long:5", "long:10", "long:15", "long:20",
                   "shrt:0", "shrt:5"]
    assert batch["frames"].shape == (7, 11, 1152)
    mask = batch["mask"].numpy()
    # long:0 covers frames -3..7: the first 3 are outside the video.
    np.testing.assert_array_equal(mask[0], [0] * 3 + [1] * 8)
    np.testing.assert_array_equal(rgb_values(batch["frames"].numpy()[0])[3:],
                                  np.arange(8))
    # long:20 covers 17..27 of 23 frames; shrt:5 covers 2..12 of 7.
    np.testing.assert_array_equal(mask[4], [1] * 6 + [0] * 5)
    np.testing.assert_array_equal(rgb_values(batch["frames"].numpy()[6])[:5],
                                  100 + np.arange(2, 7))
    assert not batch["frames"].numpy()[6][~mask[6]].any()


@pytest.mark.parametrize("rated", [False, True])
def test_per_video_windows_match_flat_windows(two_videos, rated):
    def make(per_video):
        if rated:
            return views.rated_segment_dataset(two_videos, SPEC, [1, 2], 8,
                                               vocabulary_size=5,
                                               context_frames=2,
                                               per_video=per_video)
        return views.test_segment_dataset(two_videos, SPEC, 8,
                                          context_frames=2, per_video=per_video)
    flat = next(iter(make(False)))
    grouped = next(iter(make(True)))
    windows = views.gather_windows(grouped["frames"], grouped["window_index"],
                                   grouped["window_mask"]).numpy()
    valid = grouped["segment_mask"].numpy()
    np.testing.assert_array_equal(windows[valid], flat["frames"].numpy())
    np.testing.assert_array_equal(grouped["window_mask"].numpy()[valid],
                                  flat["mask"].numpy())
    np.testing.assert_array_equal(grouped["segment_id"].numpy()[valid],
                                  flat["segment_id"].numpy())
    if rated:
        np.testing.assert_array_equal(grouped["labels"].numpy()[valid],
                                      flat["labels"].numpy())


def test_random_frame_sampling_draws_real_frames(two_videos):
    batch = next(iter(views.video_dataset(
        two_videos, SPEC, num_classes=5, max_frames=300, batch_size=2,
        num_sample_frames=40, sample_random_frames=True, seed=1)))
    assert batch["frames"].shape == (2, 40, 1152)
    assert batch["mask"].numpy().all()
    values = rgb_values(batch["frames"].numpy())
    assert set(values[0]) <= set(range(23)) and len(set(values[0])) > 10
    assert set(values[1]) <= set(range(100, 107))  # with replacement


def test_contiguous_run_sampling(two_videos):
    batch = next(iter(views.video_dataset(
        two_videos, SPEC, num_classes=5, max_frames=300, batch_size=2,
        num_sample_frames=10, seed=3)))
    values = rgb_values(batch["frames"].numpy())
    mask = batch["mask"].numpy()
    assert np.all(np.diff(values[0]) == 1) and mask[0].all()
    # The 7-frame video gives its whole self, then masked padding.
    np.testing.assert_array_equal(mask[1], [1] * 7 + [0] * 3)
    np.testing.assert_array_equal(values[1][:7], 100 + np.arange(7))


def test_folds_split_files_deterministically():
    files = [f"f{i:02d}" for i in range(12)]
    holdout = reader.select_fold(files, num_folds=6, fold=2, holdout=True)
    training = reader.select_fold(files, num_folds=6, fold=2, holdout=False)
    assert holdout == ["f02", "f08"]
    assert sorted(holdout + training) == sorted(files)
    assert reader.select_fold(list(reversed(files)), 6, 2, True) == holdout
    assert reader.select_fold(files, 1, 0, False) == files
    with pytest.raises(ValueError, match="fold 6 is not in"):
        reader.select_fold(files, 6, 6, True)


def test_record_dataset_shards_by_file(two_videos):
    import tensorflow as tf
    dataset = reader.record_dataset([two_videos])
    assert (dataset.options().experimental_distribute.auto_shard_policy
            == tf.data.experimental.AutoShardPolicy.FILE)
    assert len(list(dataset)) == 2
    assert records.FRAMES_PER_SEGMENT == 5


def test_record_dataset_numbers_records_within_each_file(write_videos):
    paths = [write_videos([dict(video_id=f"{name}{i:03d}", labels=[],
                                features=frames_with_values(2))
                           for i in range(5)], name=name)
             for name in ("a", "b")]
    seen = {(path.decode(), int(index)): record for path, index, record
            in reader.record_dataset(paths).as_numpy_iterator()}
    assert sorted(seen) == sorted((p, i) for p in paths for i in range(5))
    # The index is the record's position in its file.
    for path in paths:
        for index, record in reader.good_records(path):
            assert seen[(path, index)] == record


@pytest.mark.parametrize("make", [
    lambda path, **kw: views.test_segment_dataset(path, SPEC, 4,
                                                  context_frames=3, **kw),
    lambda path, **kw: views.test_segment_dataset(path, SPEC, 2, per_video=True,
                                                  context_frames=1, **kw),
    lambda path, **kw: views.rated_segment_dataset(path, SPEC, [1, 2], 4,
                                                   vocabulary_size=5, **kw),
    lambda path, **kw: views.video_dataset(path, SPEC, 5, 10, 2, **kw),
], ids=["test", "per_video", "rated", "video"])
def test_quantized_views_dequantize_to_the_float_views(two_videos, make):
    for quantized, floats in zip(make(two_videos, quantized=True),
                                 make(two_videos)):
        assert quantized["frames"].dtype == np.uint8
        assert floats["frames"].dtype == np.float32
        np.testing.assert_array_equal(
            parsing.model_inputs(quantized)["frames"].numpy(),
            floats["frames"].numpy())
        np.testing.assert_array_equal(quantized["mask"].numpy(),
                                      floats["mask"].numpy())


def test_any_per_record_matches_a_loop():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 4, 50)
    flags = rng.random(lengths.sum()) < 0.1
    splits = np.concatenate([[0], np.cumsum(lengths)])
    expected = [flags[a:b].any() for a, b in zip(splits[:-1], splits[1:])]
    np.testing.assert_array_equal(
        parsing.any_per_record(flags, splits).numpy(), expected)
