"""Shared fixtures: hand-built frame-level records with known contents."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from yt8m_segments.data import records  # noqa: E402

# The test files that take half a minute or more on 2 cores, longest first.
# They run first, so that with pytest-xdist (`-n 2 --dist loadfile`, which
# hands out whole files in collection order) none of them starts last and
# leaves one core idle at the end.
SLOW_FILES = ("test_wheel.py", "test_training.py", "test_learning.py",
              "test_end_to_end.py", "test_cli.py", "test_fuzz_inputs.py",
              "test_beam_inference.py", "test_video_level.py",
              "test_inference.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return SLOW_FILES.index(name) if name in SLOW_FILES else len(SLOW_FILES)
    items.sort(key=rank)  # stable: the order within each file is kept


def frames_with_values(num_frames, offset=0):
    """rgb frame t is all (t + offset); audio frame t is all (2t + offset)."""
    t = np.arange(num_frames)[:, None]
    return {
        "rgb": np.broadcast_to(t + offset, (num_frames, 1024)).astype(np.uint8),
        "audio": np.broadcast_to(2 * t + offset, (num_frames, 128)).astype(
            np.uint8),
    }


@pytest.fixture
def write_videos(tmp_path):
    """Write a list of `make_frame_example` kwargs dicts to one record file."""
    def write(videos, name="videos-00000.tfrecord"):
        path = str(tmp_path / name)
        records.write_records(
            path, [records.make_frame_example(**video) for video in videos])
        return path
    return write
