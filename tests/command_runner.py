"""Run a command (`python -m yt8m_segments.<name> ...`) inside the test
process (`run_command`: its flags parsed from argv, its main() under cli's
error handling, its stdout, stderr and absl log lines captured) or in its
own process (`run_process`). A process costs a TensorFlow start-up (~5 s)
per call; the commands' own start-up, exit codes and one-line errors are
tested through real processes in test_cli.py.
"""

import contextlib
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from yt8m_segments import cli

# TensorFlow's C++ start-up lines, which a command keeps off (cli.quiet_start).
BANNERS = ("oneDNN custom operations", "absl::InitializeLog", "cpu_feature_guard")


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_command(name, *args, expect_ok=True):
    """Result of command `name` with `args` run in this process
    (cli.run_in_process), its output captured; asserts it succeeded (or,
    with expect_ok=False, that it failed)."""
    returncode = 0
    with cli.captured_output() as (stdout, stderr):
        try:
            cli.run_in_process(f"yt8m_segments.{name}", args)
        except SystemExit as done:
            returncode = done.code if isinstance(done.code, int) else 1
    return _checked(Result(returncode, stdout.getvalue(), stderr.getvalue()),
                    expect_ok)


def run_process(name, *args, expect_ok=True):
    """Result of `python -m yt8m_segments.<name> args` in a new process."""
    done = subprocess.run([sys.executable, "-m", f"yt8m_segments.{name}", *args],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return _checked(Result(done.returncode, done.stdout, done.stderr), expect_ok)


def _checked(result, expect_ok):
    if expect_ok is None:
        return result
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        assert result.returncode != 0, result.stderr[-3000:]
    return result


@contextlib.contextmanager
def held_by_another_process(directory):
    """`directory` held (locking.hold) by a live child process for the block;
    yields the process."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\n"
         "from yt8m_segments import locking\n"
         "with locking.hold(sys.argv[1], 'test data'):\n"
         "    print('held', flush=True)\n"
         "    sys.stdin.read()\n", str(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


@contextlib.contextmanager
def small_disk(directory, size="64k"):
    """A tmpfs of `size` mounted at `directory`, for full-disk tests (root
    only: the test is skipped otherwise)."""
    os.makedirs(directory)
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
            capture_output=True, check=False).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=False)


def fill(directory, leave=4096):
    """Fill the file system of `directory` but `leave` bytes; returns the filler."""
    stat = os.statvfs(directory)
    filler = os.path.join(directory, "filler")
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(stat.f_bavail * stat.f_frsize - leave, 0))
    return filler


# Root ignores permission bits; these capabilities are what lets it.
_PERMISSION_OVERRIDES = "-dac_override,-dac_read_search"


def run_with_permissions(commands):
    """Results of `commands` ([(name, [args])]) run one after another in one
    child process in which file permission bits hold, root or not (root's
    overrides dropped with util-linux's setpriv; skipped without it)."""
    prefix = []
    if os.geteuid() == 0:
        if subprocess.run(["setpriv", "--version"], capture_output=True,
                          check=False).returncode != 0:
            pytest.skip("dropping root's permission overrides needs setpriv")
        prefix = ["setpriv", f"--inh-caps={_PERMISSION_OVERRIDES}",
                  f"--bounding-set={_PERMISSION_OVERRIDES}"]
    script = ("import json, sys\n"
              "from command_runner import run_command\n"
              "print(json.dumps([run_command(name, *args, expect_ok=None).__dict__"
              " for name, args in json.loads(sys.argv[1])]))\n")
    done = subprocess.run(
        [*prefix, sys.executable, "-c", script, json.dumps(commands)],
        capture_output=True, text=True, check=False,
        cwd=os.path.dirname(os.path.abspath(__file__)),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    return [Result(**result) for result in
            json.loads(done.stdout.strip().splitlines()[-1])]
