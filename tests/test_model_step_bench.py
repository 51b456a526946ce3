"""bench/model_step.py at --quick sizes prints its tables: one case in this
process (--case, what the full run starts per case), ~15 s on 2 cores;
Trainer's loop, the slow part to trace, is left to the full run."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_run_prints_the_step_table_and_the_breakdown():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "model_step.py"),
         "--quick", "--steps=1", "--case=DBoF/garden", "--trainer="],
        capture_output=True, text=True, timeout=120, check=True)
    lines = result.stdout.splitlines()
    assert any(line.startswith("| model | size | weights") for line in lines)
    row = next(line for line in lines if line.startswith("| DBoF | garden |"))
    assert row.count("x |") == 6, row  # train, predict, on floats: wall, CPU
    for piece in ("input batch norm", "masked batch norm", "pooling",
                  "classifier", "loss"):
        assert any(line.startswith(f"| {piece} |") for line in lines), piece
