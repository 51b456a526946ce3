"""The input fuzzer (bench/fuzz_inputs.py) on a CI-sized slice: its
classifier on hand-made runs, then every CI kind run in-process, with no
failure allowed.
"""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SPEC = importlib.util.spec_from_file_location(
    "fuzz_inputs", os.path.join(ROOT, "bench", "fuzz_inputs.py"))
fuzz_inputs = importlib.util.module_from_spec(_SPEC)
sys.modules["fuzz_inputs"] = fuzz_inputs
_SPEC.loader.exec_module(fuzz_inputs)

Expect, Result = fuzz_inputs.Expect, fuzz_inputs.Result
# Every CI kind once, each through every command it has runs for: ~75 runs,
# ~110 s on 2 cores.
NUM_CASES = len(fuzz_inputs.CI_KINDS)
SEED = 0
PATH = "/data/case.tfrecord"
WINDOWS = frozenset({"a:0", "a:5"})


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("fuzz")
    world = fuzz_inputs.build_world(str(work_dir))
    return fuzz_inputs.fuzz(world, NUM_CASES, SEED, str(work_dir / "cases"),
                            kinds=fuzz_inputs.CI_KINDS)


def classify(result, expect, command="inference"):
    return fuzz_inputs.classify(result, expect, PATH, 1, 60.0, command)[0]


def test_a_clean_error_names_file_and_record():
    stderr = ("INFO:absl:files 1/1\n"
              f"error: corrupt record in {PATH}, record 3: data checksum mismatch\n")
    assert classify(Result(1, stderr=stderr), Expect("error", 3)) == "clean_error"
    assert classify(Result(1, stderr=stderr), Expect("error", 2)) == "failure"
    assert classify(Result(1, stderr=stderr.replace(PATH, "x")),
                    Expect("error", 3)) == "failure"
    assert classify(Result(1, stderr=stderr), Expect("accept")) == "failure"


def test_tracebacks_crashes_and_silence_are_failures():
    traceback = ("Traceback (most recent call last):\n  File \"reader.py\"\n"
                 "EOFError: Compressed file ended\n")
    assert classify(Result(1, stderr=traceback), Expect("error")) == "failure"
    assert classify(Result(None, escaped=traceback), Expect("either")) == "failure"
    usage = Result(2, stderr=f"error: bad {PATH}\n")
    assert classify(usage, Expect("error")) == "failure"
    assert classify(Result(0, output=[set(WINDOWS)]),
                    Expect("error", 0, WINDOWS)) == "failure"
    slow = Result(1, stderr=f"error: {PATH} record 0\n", seconds=61.0)
    assert classify(slow, Expect("error", 0)) == "failure"


def test_accepted_and_skipped_runs_need_the_right_windows():
    assert classify(Result(0, output=[set(WINDOWS)]),
                    Expect("accept", None, WINDOWS)) == "accepted"
    assert classify(Result(0, output=[{"a:0"}]),
                    Expect("accept", None, WINDOWS)) == "failure"
    assert classify(Result(0, output=[{"a:0", "b:0"}]), Expect(
        "either", None, WINDOWS, exact=False)) == "failure"
    skipped = Result(0, stderr="WARNING:absl:skipped 1 corrupt record(s) or "
                     "file tail(s) in 1 of 1 file(s)\n", output=[{"a:0"}])
    assert classify(skipped, Expect("error", 0, frozenset({"a:0"})),
                    "skip") == "skipped"
    assert classify(Result(0, output=0.5), Expect("accept")) == "accepted"
    assert classify(Result(0, stdout="no MAP"), Expect("accept")) == "failure"
    # beam: the cache's every window, one row, no top-K
    assert classify(Result(0, output=[set(WINDOWS)]),
                    Expect("accept", None, WINDOWS), "beam") == "accepted"
    assert classify(Result(0, output=[{"a:0"}]),
                    Expect("accept", None, WINDOWS), "beam") == "failure"
    # finetune: a finite loss and a saved run
    assert classify(Result(0, output=2.5), Expect("accept"), "finetune") == "accepted"
    assert classify(Result(0, output=float("nan")), Expect("accept"),
                    "finetune") == "failure"
    assert classify(Result(0), Expect("accept"), "finetune") == "failure"


def test_the_slice_runs_every_kind(outcomes):
    print(fuzz_inputs.report(outcomes, show_paths=False))
    assert {o.case.kind for o in outcomes} == set(fuzz_inputs.CI_KINDS)
    assert {o.command for o in outcomes} == set(fuzz_inputs.COMMANDS)
    assert {o.outcome for o in outcomes} <= set(fuzz_inputs.OUTCOMES)
    assert {o.outcome for o in outcomes} >= {"clean_error", "skipped", "accepted"}


def assert_no_failure(outcomes):
    failures = [f"{o.case.kind} [{o.command}] {o.case.note}: {o.message}"
                for o in outcomes if o.outcome == "failure"]
    assert not failures, "\n".join(failures)


def test_no_failures(outcomes):
    assert_no_failure(outcomes)


@pytest.mark.heavy
def test_a_hundred_cases_without_failure(tmp_path):
    """Issue 13's CI-sized run (~400 s on 2 cores: over the suite's budget,
    so heavy; the slice above runs every kind and command)."""
    world = fuzz_inputs.build_world(str(tmp_path))
    assert_no_failure(fuzz_inputs.fuzz(world, 100, 1, str(tmp_path / "cases"),
                                       kinds=fuzz_inputs.CI_KINDS))
