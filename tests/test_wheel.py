"""The wheel: built from a copy of the clone, installed in a fresh venv, it
runs a tiny demo from an empty folder (the recipes ship as package data)."""

import glob
import os
import shutil
import subprocess
import sys

from command_runner import BANNERS


def test_the_wheel_runs_the_demo_outside_the_clone(tmp_path):
    """Build the wheel, install it (no dependencies: they come from this
    environment) in a fresh venv, run a tiny demo from an empty folder: the
    recipes must ship in the wheel."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = tmp_path / "source"  # a copy: the build writes build/ beside setup.cfg
    shutil.copytree(root, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "demo_output"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
                    str(source)], check=True, capture_output=True)
    wheel, = glob.glob(str(tmp_path / "dist" / "yt8m_segments-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    python = str(venv / "bin" / "python")
    # --ignore-installed: pip would count the system site-packages' editable
    # install of the same version as this wheel installed already.
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q",
                    wheel],
                   check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    # Only what the venv sees: a PYTHONPATH to a clone would shadow the wheel.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([python, "-c", "import yt8m_segments; print(yt8m_segments.__file__)"],
                           cwd=work, check=True, capture_output=True, text=True, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout
    result = subprocess.run(
        [str(venv / "bin" / "yt8m-demo"), "--output_dir=out", "--num_train_videos=40",
         "--num_validate_videos=20", "--num_test_videos=10"],
        cwd=work, capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fine-tuned on rated segments" in result.stdout
    assert "--recipe" not in result.stdout and os.path.join(
        str(venv), "lib") in result.stdout  # the recipes the wheel holds
    assert not any(banner in result.stderr for banner in BANNERS)
