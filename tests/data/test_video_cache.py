"""The video cache yields what the records view does; it knows when stale."""

import os

import numpy as np
import pytest

from conftest import frames_with_values
from command_runner import run_command
from yt8m_segments.data import synthetic
from yt8m_segments.data import reader
from yt8m_segments.data import video_cache
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec

SPEC = FeatureSpec()
VOCABULARY = 6
LENGTHS = {"vid0": 23, "vid1": 7, "vid2": 40, "vid3": 12, "none": 9}


@pytest.fixture
def two_files(write_videos):
    """5 videos of known lengths in 2 files; frame t of a video is all t + offset."""
    first = write_videos([
        dict(video_id="vid0", labels=[1, 5], features=frames_with_values(23)),
        dict(video_id="vid1", labels=[2], features=frames_with_values(7, 50)),
        dict(video_id="none", labels=[], features=frames_with_values(9, 3)),
    ], name="a.tfrecord")
    second = write_videos([
        dict(video_id="vid2", labels=[4, 1, 0],
             features=frames_with_values(40, 100)),
        dict(video_id="vid3", labels=[3], features=frames_with_values(12, 7)),
    ], name="b.tfrecord")
    return [first, second]


def concatenated(dataset):
    """Every batch of one pass: {key: list of per-example numpy arrays}."""
    examples = {}
    for batch in dataset.as_numpy_iterator():
        for key, value in batch.items():
            examples.setdefault(key, []).extend(value)
    return examples


def per_video(dataset):
    """{video id: (its real frames, its labels)} of a whole-video dataset."""
    videos = {}
    for batch in dataset.as_numpy_iterator():
        for video_id, frames, mask, labels in zip(
                batch["id"], batch["frames"], batch["mask"], batch["labels"]):
            videos[video_id.decode()] = (frames[mask], labels)
    return videos


def test_cache_yields_the_records_view(tmp_path, two_files):
    cache_dir = str(tmp_path / "cache")
    manifest = video_cache.build(cache_dir, two_files, SPEC, max_frames=30,
                                 vocabulary_size=VOCABULARY, batch_size=2)
    assert (manifest["num_videos"], manifest["num_frames"],
            manifest["num_labels"]) == (5, 23 + 7 + 9 + 30 + 12, 7)
    view = views.video_dataset(None, SPEC, VOCABULARY, 30, 3, files=two_files,
                               quantized=True)
    cached = video_cache.dataset(cache_dir, 3)
    assert cached.element_spec.keys() == view.element_spec.keys()
    for key, spec in view.element_spec.items():
        assert cached.element_spec[key].dtype == spec.dtype, key
        assert cached.element_spec[key].shape.is_compatible_with(spec.shape)
    expected, got = per_video(view), per_video(cached)
    assert sorted(got) == sorted(expected) == sorted(LENGTHS)
    for video_id, (frames, labels) in expected.items():
        np.testing.assert_array_equal(got[video_id][0], frames)
        np.testing.assert_array_equal(got[video_id][1], labels)
    # Videos in file order, each file's in record order; padded batches as
    # the view pads them (the last real frame repeated, masked).
    batch = next(iter(video_cache.dataset(cache_dir, 5)))
    assert batch["id"].numpy().astype(str).tolist() == [
        "vid0", "vid1", "none", "vid2", "vid3"]
    assert batch["frames"].shape == (5, 30, 1152)
    np.testing.assert_array_equal(batch["frames"][1, 7:],
                                  np.broadcast_to(batch["frames"][1, 6],
                                                  (23, 1152)))
    assert batch["mask"].numpy().sum(axis=1).tolist() == [23, 7, 9, 30, 12]


def test_files_extracted_in_parallel_make_the_same_cache(tmp_path, two_files):
    for parallel in (1, 2):
        video_cache.build(str(tmp_path / f"cache{parallel}"), two_files, SPEC,
                          vocabulary_size=VOCABULARY, parallel_files=parallel)
    one, two = (next(iter(video_cache.dataset(str(tmp_path / f"cache{p}"), 5)))
                for p in (1, 2))
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)


def test_killed_build_resumes_without_reading_finished_files(
        tmp_path, two_files, monkeypatch):
    cache_dir = str(tmp_path / "cache")
    read = []
    video_dataset = views.video_dataset
    monkeypatch.setattr(views, "video_dataset", lambda *a, **k: read.append(
        k["files"]) or video_dataset(*a, **k))
    write_arrays = video_cache._write_arrays  # pylint: disable=protected-access

    def killed_on_the_second_file(writer, batches):
        if len(read) == 2:
            raise KeyboardInterrupt
        return write_arrays(writer, batches)
    monkeypatch.setattr(video_cache, "_write_arrays", killed_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        video_cache.build(cache_dir, two_files, SPEC,
                          vocabulary_size=VOCABULARY, parallel_files=1)
    assert not video_cache.is_current(cache_dir, two_files, SPEC,
                                      vocabulary_size=VOCABULARY)
    monkeypatch.setattr(video_cache, "_write_arrays", write_arrays)
    read.clear()
    video_cache.build(cache_dir, two_files, SPEC, vocabulary_size=VOCABULARY)
    assert read == [[two_files[1]]]  # the first file's part was kept
    assert sorted(per_video(video_cache.dataset(cache_dir, 2))) == \
        sorted(LENGTHS)
    assert sorted(os.listdir(tmp_path)) == ["a.tfrecord", "b.tfrecord",
                                            "cache"]


def test_a_torn_key_file_of_a_killed_build_is_rebuilt(tmp_path, two_files):
    """A build killed while writing `<cache>.tmp/key.json` left it half
    written; the rerun starts afresh instead of failing on every run."""
    cache_dir = str(tmp_path / "cache")
    os.makedirs(cache_dir + ".tmp")
    with open(os.path.join(cache_dir + ".tmp", "key.json"), "w") as handle:
        handle.write('{"input_files": [["a.tfr')
    video_cache.build(cache_dir, two_files, SPEC, vocabulary_size=VOCABULARY)
    assert video_cache.is_current(cache_dir, two_files, SPEC,
                                  vocabulary_size=VOCABULARY)
    assert sorted(per_video(video_cache.dataset(cache_dir, 2))) == \
        sorted(LENGTHS)


@pytest.mark.parametrize("random_frames", [False, True])
def test_sampled_frames_come_from_each_video(tmp_path, two_files,
                                             random_frames):
    cache_dir = str(tmp_path / "cache")
    video_cache.build(cache_dir, two_files, SPEC, vocabulary_size=VOCABULARY)
    got = concatenated(video_cache.dataset(
        cache_dir, 2, num_sample_frames=10, sample_random_frames=random_frames,
        seed=3))
    offsets = {"vid0": 0, "vid1": 50, "none": 3, "vid2": 100, "vid3": 7}
    for video_id, frames, mask in zip(got["id"], got["frames"], got["mask"]):
        video_id = video_id.decode()
        length = LENGTHS[video_id]
        t = frames[:, 0].astype(int) - offsets[video_id]  # the frame's index
        np.testing.assert_array_equal(frames[:, 1024:],
                                      np.broadcast_to(
                                          (2 * t + offsets[video_id])[:, None],
                                          (10, 128)).astype(np.uint8))
        assert ((0 <= t) & (t < length)).all()
        if random_frames:
            assert mask.all()
        else:  # one run of consecutive frames, masked past the end
            assert mask.sum() == min(10, length)
            kept = t[mask]
            np.testing.assert_array_equal(np.diff(kept), 1)


def test_shuffled_epochs_hold_each_video_once(tmp_path, two_files):
    cache_dir = str(tmp_path / "cache")
    video_cache.build(cache_dir, two_files, SPEC, vocabulary_size=VOCABULARY)
    labels = {i: l for i, l in zip(*(lambda e: (e["id"], e["labels"]))(
        concatenated(video_cache.dataset(cache_dir, 5))))}
    assert np.flatnonzero(labels[b"vid2"]).tolist() == [0, 1, 4]
    assert not labels[b"none"].any()
    shuffled = video_cache.dataset(cache_dir, 2, shuffle=True, seed=1)
    epochs = [concatenated(shuffled) for _ in range(4)]
    for epoch in epochs:
        assert sorted(epoch["id"]) == sorted(labels)
        for video_id, video_labels in zip(epoch["id"], epoch["labels"]):
            np.testing.assert_array_equal(video_labels, labels[video_id])
    assert len({tuple(epoch["id"]) for epoch in epochs}) > 1


def test_ensure_rebuilds_only_when_stale(tmp_path, two_files):
    cache_dir = str(tmp_path / "cache")
    params = dict(max_frames=30, vocabulary_size=VOCABULARY)
    first = video_cache.ensure(cache_dir, two_files, SPEC, **params)
    assert video_cache.is_current(cache_dir, two_files, SPEC, **params)
    assert video_cache.ensure(cache_dir, two_files, SPEC, **params) == first
    assert not video_cache.is_current(cache_dir, two_files, SPEC,
                                      max_frames=20,
                                      vocabulary_size=VOCABULARY)
    assert video_cache.ensure(cache_dir, two_files, SPEC, max_frames=20,
                              vocabulary_size=VOCABULARY)["num_frames"] == \
        20 + 7 + 9 + 20 + 12
    stat = os.stat(two_files[0])
    os.utime(two_files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not video_cache.is_current(cache_dir, two_files, SPEC,
                                      max_frames=20,
                                      vocabulary_size=VOCABULARY)


def test_bad_record_fails_like_the_records_view(tmp_path, write_videos):
    path = write_videos([dict(video_id="fine", labels=[1],
                              features=frames_with_values(5)),
                         dict(video_id="oops", labels=[VOCABULARY],
                              features=frames_with_values(5))])
    with pytest.raises(reader.InputError,
                       match=r"label id outside.*record: 1 video id: oops"):
        video_cache.build(str(tmp_path / "cache"), [path], SPEC,
                          vocabulary_size=VOCABULARY)
    # No cache, and no finished part of the bad file for a rerun to keep.
    assert "cache" not in os.listdir(tmp_path)
    assert not os.path.exists(tmp_path / "cache.tmp" / "parts" / "00000")


def test_pretraining_from_the_cache(tmp_path):
    data = tmp_path / "data"
    synthetic.generate(str(data), 24, 4, 4, seed=4, num_classes=100,
                       num_active_classes=8, num_segment_classes=4,
                       min_frames=10, max_frames=20)
    cache_dir = tmp_path / "video_cache"
    command = ["--stage=pretrain",
               f"--train_data_pattern={data}/train-*.tfrecord",
               f"--video_cache_dir={cache_dir}", "--model=AveragePooling",
               "--video_level_classifier_model=Logistic", "--batch_size=8",
               "--num_classes=100", "--num_epochs=2", "--num_sample_frames=5",
               "--sample_random_frames"]
    logs = []
    for run in ("first", "second"):
        result = run_command("train", *command, f"--train_dir={tmp_path / run}")
        assert os.path.exists(tmp_path / run / "model.keras")
        logs.append(result.stderr)
    assert "building video cache" in logs[0]
    assert "video cache" in logs[1] and "is current" in logs[1]
