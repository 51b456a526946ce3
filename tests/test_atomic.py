"""atomic.py: one temporary name for every written file, the old file kept
when a write fails, nothing left behind, a full disk named in one line."""

import os
import subprocess

import numpy as np
import pytest

from command_runner import small_disk
from yt8m_segments import atomic
from yt8m_segments.postprocess import cache


def test_temporary_names_keep_the_extensions_writers_need():
    pid = os.getpid()
    assert atomic.temporary_name("/r/model.keras") == f"/r/model.tmp-{pid}.keras"
    assert atomic.temporary_name("/r/ckpt-5.weights.h5") == f"/r/ckpt-5.tmp-{pid}.weights.h5"
    assert atomic.temporary_name("/r/report.png") == f"/r/report.tmp-{pid}.png"
    assert atomic.temporary_name("/r/sub.csv") == f"/r/sub.csv.tmp-{pid}"
    assert atomic.is_temporary(atomic.temporary_name("/r/model.keras"))
    assert not atomic.is_temporary("/r.tmp-1/model.keras")  # only the name counts


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "out.csv")
    with atomic.atomic_open(path) as handle:
        handle.write("old\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(path) as handle:
            handle.write("half of the new")
            raise RuntimeError("killed")
    assert open(path).read() == "old\n"
    assert os.listdir(tmp_path) == ["out.csv"]
    with atomic.atomic_path(str(tmp_path / "m.keras")) as tmp:
        assert tmp.endswith(".keras") and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "w").write("new")
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "out.csv"]



def dead_pid():
    """The pid of a process that has ended."""
    done = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_a_killed_writers_temporary_goes_with_the_next_write(tmp_path):
    """A SIGKILL strands `<name>.tmp-<pid>` (found by bench/kill_points.py:
    a rerun wrote under its own pid and left the old one for good); the next
    write of the same file removes it, but not a running writer's, nor
    another file's."""
    stale, live = dead_pid(), os.getppid()
    for name in (f"ckpt-4.tmp-{stale}.weights.h5", f"ckpt-4.tmp-{live}.weights.h5",
                 f"ckpt-40.tmp-{stale}.weights.h5", f"sub.csv.tmp-{stale}"):
        open(tmp_path / name, "w").close()
    with atomic.atomic_path(str(tmp_path / "ckpt-4.weights.h5")) as tmp:
        open(tmp, "w").write("weights")
    with atomic.atomic_open(str(tmp_path / "sub.csv")) as handle:
        handle.write("Class,Segments\n")
    assert sorted(os.listdir(tmp_path)) == sorted([
        "ckpt-4.weights.h5", f"ckpt-4.tmp-{live}.weights.h5",
        f"ckpt-40.tmp-{stale}.weights.h5", "sub.csv"])

def test_a_full_disk_names_the_output_and_keeps_the_old_file(tmp_path):
    """CSV (atomic_open) and cache writes on a full disk: one line naming the
    file the user asked for; the earlier file intact, no temporary left."""
    with small_disk(tmp_path / "disk") as disk:
        path = str(disk / "submission.csv")
        with atomic.atomic_open(path) as handle:
            handle.write("Class,Segments\n")
        with pytest.raises(OSError) as error:
            with atomic.atomic_open(path) as handle:
                handle.write("x" * 200_000)
        assert str(error.value) == f"cannot write {path}: No space left on device"
        assert open(path).read() == "Class,Segments\n"
        with pytest.raises(OSError) as error:
            cache.write_cache(str(disk / "cache"), [f"v:{i}" for i in range(20_000)],
                              np.zeros((20_000, 4)), [1, 2, 3, 4], {})
        assert str(error.value) == (f"cannot write {disk / 'cache'}: "
                                    "No space left on device")
        assert sorted(os.listdir(disk)) == ["cache", "submission.csv"]
        assert os.listdir(disk / "cache") == []  # no temporaries, no lock


def test_a_read_only_file_system_names_the_output(tmp_path):
    """As a full disk: one line naming the output, the old file kept; the
    lock of a job's output directory too (root ignores permission bits, so
    a read-only mount stands for a directory the job may not write)."""
    from yt8m_segments import locking
    with small_disk(tmp_path / "disk") as disk:
        path = str(disk / "submission.csv")
        with atomic.atomic_open(path) as handle:
            handle.write("Class,Segments\n")
        os.makedirs(disk / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(OSError) as error:
            with atomic.atomic_open(path) as handle:
                handle.write("new")
        assert str(error.value) == f"cannot write {path}: Read-only file system"
        assert open(path).read() == "Class,Segments\n"
        for directory in (disk / "run", disk / "new_run"):
            with pytest.raises(OSError) as error:
                with locking.hold(str(directory), "training run"):
                    pass
            assert str(error.value) == (f"cannot write {directory}: "
                                        "Read-only file system")
