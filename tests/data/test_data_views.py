"""The views read exact dequantized values and gather the right frames."""

import numpy as np
import pytest

from conftest import frames_with_values
from yt8m_segments.data import classes
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec

SPEC = FeatureSpec()


def dequantized_frame(rgb_value, audio_value):
    """The starter code's formula, written out: x * 4/255 + 4/512 - 2."""
    rgb = np.full(1024, rgb_value * 4.0 / 255.0 + 4.0 / 512.0 - 2.0)
    audio = np.full(128, audio_value * 4.0 / 255.0 + 4.0 / 512.0 - 2.0)
    return np.concatenate([rgb, audio]).astype(np.float32)


def test_dequantize_matches_starter_formula():
    values = np.arange(256, dtype=np.float32)
    expected = values * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)
    np.testing.assert_allclose(records.dequantize(values), expected, rtol=0,
                               atol=1e-6)
    assert records.dequantize(np.float32(0)) == pytest.approx(-1.9921875)
    assert records.dequantize(np.float32(255)) == pytest.approx(2.0078125)
    np.testing.assert_array_equal(records.quantize(records.dequantize(values)),
                                  values.astype(np.uint8))


def test_video_view_values_mask_and_labels(write_videos):
    path = write_videos([
        dict(video_id="aaaa", labels=[3, 7], features=frames_with_values(4)),
        dict(video_id="bbbb", labels=[], features=frames_with_values(2, 10)),
    ])
    batch = next(iter(views.video_dataset(path, SPEC, num_classes=10,
                                          max_frames=3, batch_size=2)))
    assert batch["frames"].shape == (2, 3, 1152)
    np.testing.assert_array_equal(batch["mask"].numpy(),
                                  [[1, 1, 1], [1, 1, 0]])
    for t in range(3):
        np.testing.assert_allclose(batch["frames"][0, t],
                                   dequantized_frame(t, 2 * t), atol=1e-6)
    np.testing.assert_allclose(batch["frames"][1, 1],
                               dequantized_frame(11, 12), atol=1e-6)
    assert not batch["frames"][1, 2].numpy().any()  # padding is zero
    expected_labels = np.zeros((2, 10))
    expected_labels[0, [3, 7]] = 1
    np.testing.assert_array_equal(batch["labels"].numpy(), expected_labels)


def test_test_view_enumerates_windows_and_pads_the_last(write_videos):
    path = write_videos([
        dict(video_id="vid1", labels=[], features=frames_with_values(12)),
        dict(video_id="vid2", labels=[], features=frames_with_values(5)),
    ])
    batch = next(iter(views.test_segment_dataset(path, SPEC, batch_size=10)))
    ids = [s.decode() for s in batch["segment_id"].numpy()]
    assert ids == ["vid1:0", "vid1:5", "vid1:10", "vid2:0"]
    np.testing.assert_array_equal(batch["mask"].numpy()[2], [1, 1, 0, 0, 0])
    np.testing.assert_allclose(batch["frames"][1, 3], dequantized_frame(8, 16),
                               atol=1e-6)
    np.testing.assert_allclose(batch["frames"][2, 1], dequantized_frame(11, 22),
                               atol=1e-6)
    assert not batch["frames"][2, 2:].numpy().any()


def test_rated_view_groups_pairs_by_segment(write_videos):
    # Segment classes 4, 6, 9; the video is labelled 6 (and 2, not rated).
    path = write_videos([dict(
        video_id="abcd", labels=[6, 2], features=frames_with_values(20),
        segment_start_times=[10, 0, 10], segment_labels=[4, 6, 9],
        segment_scores=[1.0, 0.0, 1.0])])
    batch = next(iter(views.rated_segment_dataset(
        path, SPEC, segment_class_ids=[4, 6, 9], batch_size=8,
        negative_weight=0.5, vocabulary_size=10)))
    ids = [s.decode() for s in batch["segment_id"].numpy()]
    assert ids == ["abcd:10", "abcd:0"]
    np.testing.assert_allclose(batch["frames"][0, 2], dequantized_frame(12, 24),
                               atol=1e-6)
    np.testing.assert_array_equal(batch["labels"].numpy(),
                                  [[1, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(batch["rated"].numpy(),
                                  [[1, 0, 1], [0, 1, 0]])
    # Rated pairs weigh 1; classes outside the video's labels (4, 9) share 0.5.
    np.testing.assert_allclose(batch["weights"].numpy(),
                               [[1, 0, 1], [0.25, 1, 0.25]])


def test_rated_view_without_video_labels_has_finite_weights(write_videos):
    path = write_videos([dict(
        video_id="nolb", labels=[], features=frames_with_values(10),
        segment_start_times=[5], segment_labels=[4], segment_scores=[0.0])])
    batch = next(iter(views.rated_segment_dataset(
        path, SPEC, segment_class_ids=[4, 6], batch_size=8,
        vocabulary_size=10)))
    np.testing.assert_allclose(batch["weights"].numpy(), [[1.0, 0.5]])


def test_label_outside_vocabulary_names_the_video(write_videos):
    path = write_videos([dict(video_id="badl", labels=[12],
                              features=frames_with_values(3))])
    dataset = views.video_dataset(path, SPEC, num_classes=10, max_frames=5,
                                  batch_size=1)
    with pytest.raises(reader.InputError,
                       match=r"outside the 10-class vocabulary file: \S+videos-00000"
                             r".tfrecord record: 0 video id: badl"):
        next(reader.iterate(dataset, [path]))


def test_no_matching_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file matches"):
        views.list_files(str(tmp_path / "nothing-*.tfrecord"))


def test_segment_classes_from_records_and_file(write_videos, tmp_path):
    path = write_videos([
        dict(video_id="v1", labels=[1], features=frames_with_values(10),
             segment_start_times=[0], segment_labels=[9], segment_scores=[1.0]),
        dict(video_id="v2", labels=[1], features=frames_with_values(10),
             segment_start_times=[5, 0], segment_labels=[3, 9],
             segment_scores=[0.0, 1.0]),
    ])
    assert classes.segment_label_ids_from_records(path) == [3, 9]
    csv_path = tmp_path / "segment_label_ids.csv"
    csv_path.write_text("Index\n9\n3\n5\n")
    assert classes.read_segment_label_ids(str(csv_path)) == [3, 5, 9]
    csv_path.write_text("Index\n9\nx\n")
    with pytest.raises(ValueError, match="line 3"):
        classes.read_segment_label_ids(str(csv_path))


def test_reads_the_real_segment_label_ids_file():
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                        "segment_label_ids.csv")
    if not os.path.exists(path):
        pytest.skip("../shared/data is not beside this checkout")
    ids = classes.read_segment_label_ids(path)
    assert len(ids) == 1000 and ids[0] >= 3 and ids[-1] <= 1831
