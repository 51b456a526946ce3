"""Multi-worker input: the workers' shares of the training videos are
disjoint and cover every video, by whole files (auto-shard FILE) or, when
--skip_corrupt_records reads damaged files through Python, by records (DATA:
tf.data cannot shard that source by file, and used to fail with
'Found an unshardable source dataset')."""

import shutil

import pytest
import tensorflow as tf
from tensorflow.python.data.experimental.ops import distribute as tf_distribute

from yt8m_segments.data import reader
from yt8m_segments.data import synthetic
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec

NUM_WORKERS = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    synthetic.generate(str(root), 30, 2, 2, seed=1, num_classes=100,
                       num_active_classes=6, num_segment_classes=3,
                       min_frames=10, max_frames=20, num_files_per_split=3)
    return reader.list_files(str(root / "train-*.tfrecord"))


def video_ids(dataset):
    return [video.decode() for batch in dataset for video in batch["id"].numpy()]


def worker_shares(files, **options):
    """Each worker's videos, as `experimental_distribute_dataset` shards a
    dataset that worker builds for itself (same seed, first iteration)."""
    def make():
        return views.video_dataset(None, FeatureSpec(), 100, 300, 4,
                                   shuffle=True, seed=3, files=files,
                                   quantized=True, **options)
    return make, [video_ids(tf_distribute._AutoShardDataset(  # pylint: disable=protected-access
        make(), NUM_WORKERS, index, NUM_WORKERS)) for index in range(NUM_WORKERS)]


def assert_disjoint_and_covering(shares, everything):
    together = [video for share in shares for video in share]
    assert len(together) == len(set(together)), "a video on two workers"
    assert sorted(together) == sorted(everything)


@pytest.mark.parametrize("skip_corrupt_records", [False, True])
def test_clean_files_are_shared_by_whole_files(files, skip_corrupt_records):
    make, shares = worker_shares(files, skip_corrupt_records=skip_corrupt_records)
    assert_disjoint_and_covering(shares, video_ids(make()))
    by_file = [set(video_ids(views.video_dataset(None, FeatureSpec(), 100, 300, 4,
                                                 files=[path], quantized=True)))
               for path in files]
    assert sorted(map(sorted, shares)) == sorted(map(sorted, by_file))


def test_damaged_files_are_shared_by_records(files, tmp_path):
    damaged = [str(tmp_path / path.rsplit("/", 1)[1]) for path in files]
    for source, target in zip(files, damaged):
        shutil.copy(source, target)
    raw = bytearray(tf.io.gfile.GFile(damaged[1], "rb").read())
    raw[len(raw) // 2] ^= 0xFF  # one record's checksum fails
    with open(damaged[1], "wb") as handle:
        handle.write(raw)
    make, shares = worker_shares(damaged, skip_corrupt_records=True)
    everything = video_ids(make())
    assert len(everything) == 29  # the damaged record skipped
    assert_disjoint_and_covering(shares, everything)
    assert all(shares)
