"""One writer per output directory (locking.hold): a second job refuses,
naming the holder; a killed holder's lock is taken over; re-entrant in one
process; the lock file goes when the job ends."""

import os
import signal
import socket

import pytest

from command_runner import held_by_another_process
from yt8m_segments import locking


def test_a_second_job_refuses_naming_the_holder(tmp_path):
    with held_by_another_process(tmp_path / "run") as holder:
        with pytest.raises(locking.DirectoryInUseError) as error:
            with locking.hold(str(tmp_path / "run"), "training run"):
                pass
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'run'} is in use by host="
                              f"{socket.gethostname()} pid={holder.pid} ")
    assert "writing=test_data" in message and locking.LOCK_FILE in message
    assert not (tmp_path / "run" / locking.LOCK_FILE).exists()  # released


def test_a_killed_holders_lock_is_taken_over(tmp_path, caplog):
    directory = tmp_path / "cache"
    with held_by_another_process(directory) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        assert f"pid={holder.pid}" in (directory / locking.LOCK_FILE).read_text()
        with caplog.at_level("WARNING"):
            with locking.hold(str(directory), "probability cache"):
                mine = (directory / locking.LOCK_FILE).read_text()
    assert f"pid={os.getpid()} " in mine and "writing=probability_cache" in mine
    assert f"pid={holder.pid}" in caplog.text and "taking over" in caplog.text
    assert not (directory / locking.LOCK_FILE).exists()


def test_reentrant_in_one_process(tmp_path):
    directory = str(tmp_path / "d")
    with locking.hold(directory, "exports"):
        with locking.hold(directory, "exports"):
            assert os.path.exists(os.path.join(directory, locking.LOCK_FILE))
        assert os.path.exists(os.path.join(directory, locking.LOCK_FILE))
    assert os.listdir(directory) == []


def test_object_store_paths_are_not_locked():
    with locking.hold("gs://bucket/run", "training run"):
        pass


def test_a_held_cache_is_left_readable_by_a_refused_writer(tmp_path):
    """The refused writer de-commits nothing: the cache there stays whole."""
    import numpy as np
    from yt8m_segments.postprocess import cache
    path = str(tmp_path / "cache")
    probs = np.array([[0.25, 0.5]], np.float32)
    cache.write_cache(path, ["v:0"], probs, [3, 7], {})
    with held_by_another_process(path):
        with pytest.raises(locking.DirectoryInUseError):
            cache.write_cache(path, ["v:0", "v:5"], np.zeros((2, 2)), [3, 7], {})
    opened = cache.ProbabilityCache.open(path)
    assert opened.segment_ids == ["v:0"]
    np.testing.assert_array_equal(opened.segment_probs[:], probs)
