"""The segment cache yields what the records view does; it knows when stale."""

import os

import numpy as np
import pytest

from conftest import frames_with_values
from yt8m_segments.data import reader
from yt8m_segments.data import segment_cache
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec

SPEC = FeatureSpec()
CLASSES = [1, 2, 4]
# 0.3 shared by 1-3 classes is not a float16 number: the cache rounds it.
PARAMS = dict(negative_weight=0.3, vocabulary_size=5)


@pytest.fixture
def two_files(write_videos):
    """8 distinct rated segments in 2 files, some at the videos' edges."""
    first = write_videos([
        dict(video_id="vid0", labels=[1], features=frames_with_values(23),
             segment_start_times=[0, 5, 20], segment_labels=[1, 2, 4],
             segment_scores=[1.0, 0.0, 1.0]),
        dict(video_id="vid1", labels=[2], features=frames_with_values(7, 50),
             segment_start_times=[0], segment_labels=[2],
             segment_scores=[1.0]),
        dict(video_id="none", labels=[3], features=frames_with_values(10)),
    ], name="a.tfrecord")
    second = write_videos([
        dict(video_id="vid2", labels=[4, 1],
             features=frames_with_values(40, 100),
             segment_start_times=[10, 35, 10, 15],
             segment_labels=[4, 1, 1, 2], segment_scores=[0.0, 1.0, 1.0, 0.0]),
        dict(video_id="vid3", labels=[], features=frames_with_values(12, 7),
             segment_start_times=[5], segment_labels=[4],
             segment_scores=[0.0]),
    ], name="b.tfrecord")
    return [first, second]


def concatenated(dataset):
    """Every batch of one pass, concatenated per key (numpy)."""
    batches = list(dataset.as_numpy_iterator())
    return {key: np.concatenate([b[key] for b in batches])
            for key in batches[0]}


@pytest.mark.parametrize("context_frames", [0, 2])
def test_cache_yields_the_records_view(tmp_path, two_files, context_frames):
    cache_dir = str(tmp_path / "cache")
    manifest = segment_cache.build(cache_dir, two_files, SPEC, CLASSES,
                                   context_frames=context_frames,
                                   batch_size=3, **PARAMS)
    view = views.rated_segment_dataset(
        None, SPEC, CLASSES, 3, context_frames=context_frames, files=two_files,
        quantized=True, **PARAMS)
    cached = segment_cache.dataset(cache_dir, 3)
    assert manifest["num_segments"] == 8
    assert cached.element_spec.keys() == view.element_spec.keys()
    for key, spec in view.element_spec.items():
        assert cached.element_spec[key].dtype == spec.dtype, key
        assert cached.element_spec[key].shape.is_compatible_with(spec.shape)
    expected, got = concatenated(view), concatenated(cached)
    for key in ("labels", "weights"):  # stored as float16
        expected[key] = expected[key].astype(np.float16).astype(np.float32)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
        assert got[key].dtype == value.dtype, key
    assert got["frames"].shape == (8, 5 + 2 * context_frames, 1152)


def test_shuffled_epochs_hold_each_segment_once(tmp_path, two_files):
    cache_dir = str(tmp_path / "cache")
    segment_cache.build(cache_dir, two_files, SPEC, CLASSES, **PARAMS)
    reference = concatenated(segment_cache.dataset(cache_dir, 8))
    frames_of = dict(zip(reference["segment_id"], reference["frames"]))
    shuffled = segment_cache.dataset(cache_dir, 3, shuffle=True, seed=7)
    epochs = [concatenated(shuffled) for _ in range(2)]
    for epoch in epochs:
        assert sorted(epoch["segment_id"]) == sorted(reference["segment_id"])
        for segment_id, frames in zip(epoch["segment_id"], epoch["frames"]):
            np.testing.assert_array_equal(frames, frames_of[segment_id])
    assert list(epochs[0]["segment_id"]) != list(epochs[1]["segment_id"])


def test_ensure_rebuilds_only_when_stale(tmp_path, two_files, monkeypatch):
    cache_dir = str(tmp_path / "cache")
    builds = []
    build = segment_cache.build
    monkeypatch.setattr(segment_cache, "build",
                        lambda *a, **k: builds.append(k) or build(*a, **k))

    def ensure(**params):
        return segment_cache.ensure(cache_dir, two_files, SPEC, CLASSES,
                                    **PARAMS, **params)

    first = ensure()
    assert ensure() == first and len(builds) == 1
    assert not segment_cache.is_current(cache_dir, two_files, SPEC, CLASSES,
                                        context_frames=2, **PARAMS)
    assert ensure(context_frames=2)["window_frames"] == 9
    assert len(builds) == 2
    stat = os.stat(two_files[1])
    os.utime(two_files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not segment_cache.is_current(cache_dir, two_files, SPEC, CLASSES,
                                        context_frames=2, **PARAMS)
    ensure(context_frames=2)
    assert len(builds) == 3
    assert segment_cache.is_current(cache_dir, two_files, SPEC, CLASSES,
                                    context_frames=2, **PARAMS)
    assert sorted(os.listdir(tmp_path)) == ["a.tfrecord", "b.tfrecord",
                                            "cache"]


def test_corrupt_record_fails_like_the_records_view(tmp_path, write_videos):
    path = write_videos([dict(video_id=f"v{i:03d}", labels=[1],
                              features=frames_with_values(10),
                              segment_start_times=[0], segment_labels=[1],
                              segment_scores=[1.0]) for i in range(3)])
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # inside record 1 of 3
    open(path, "wb").write(bytes(data))
    with pytest.raises(reader.InputError, match=rf"{path}, record 1"):
        segment_cache.build(str(tmp_path / "cache"), [path], SPEC, [1],
                            vocabulary_size=5)
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_no_rated_segments_is_a_clear_error(tmp_path, write_videos):
    path = write_videos([dict(video_id="none", labels=[1],
                              features=frames_with_values(10))])
    with pytest.raises(ValueError, match=rf"no rated segments in .*{path}"):
        segment_cache.build(str(tmp_path / "cache"), [path], SPEC, [1],
                            vocabulary_size=5)
    assert os.listdir(tmp_path) == [os.path.basename(path)]
