"""cli.py through the commands: one-line errors and exit codes, a quiet
start, --help with the shared flags, --recipe (the wheel: test_wheel.py)."""

import importlib
import os
import subprocess
import sys

import pytest

from command_runner import BANNERS
from command_runner import run_process as command
from yt8m_segments import cli


def test_a_usage_error_is_one_line_and_a_hint():
    result = command("train", expect_ok=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --train_data_pattern is required", "(see train.py --help)"]


def test_a_missing_file_is_the_package_error_in_one_line(tmp_path):
    missing = str(tmp_path / "truth.csv")
    args = ["eval", f"--submission_file={tmp_path}/s.csv",
            f"--ground_truth_file={missing}"]
    result = command(*args, expect_ok=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: no CSV file at ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not any(banner in result.stderr for banner in BANNERS)
    assert "Traceback" in command(*args, "--verbosity=1", expect_ok=False).stderr


def test_a_pattern_that_matches_nothing_names_it(tmp_path):
    result = command("train", "--stage=pretrain",
                     f"--train_data_pattern={tmp_path}/none-*",
                     f"--train_dir={tmp_path}/run", expect_ok=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: no file matches the data pattern '{tmp_path}/none-*'")


@pytest.mark.parametrize("module, shared", [
    ("train", ["--train_dir", "--batch_size", "--feature_names", "--recipe"]),
    ("inference", ["--train_dir", "--segment_max_pred", "--refine", "--batch_size"]),
    ("eval", ["--segment_max_pred", "--eval_data_pattern", "--refine"]),
    ("export", ["--train_dir", "--tf_logs"])])
def test_help_lists_the_shared_flags(module, shared):
    """In-process (cli.help_text is what --help prints; the next test runs
    --help through a process)."""
    text = cli.help_text(importlib.import_module(f"yt8m_segments.{module}").__name__)
    for name in shared:
        assert f"  {name}:" in text or f"  --[no]{name[2:]}:" in text, name
    assert len(text.splitlines()) < 400  # not --helpfull's absl and TF flags


def test_help_groups_the_flags_with_defaults():
    text = command("inference", "--help").stdout
    headings = [line for line in text.splitlines() if line.endswith(" flags:")
                or line.endswith("refinement:") or line.endswith("records:")]
    assert headings[0] == "inference.py flags:", headings
    assert "input records:" in headings and "command-line flags:" in headings
    own = text.index("inference.py flags:")
    shared = text.index("probability caches and refinement:")
    assert own < text.index("  --output_file:") < shared < text.index("  --refine:")
    assert "  --refine_topk: " in text and "    (default: 20)" in text
    assert "--alsologtostderr" not in text  # absl's own: --helpfull only


def test_every_shared_flag_is_in_one_help_group():
    from absl import flags
    from yt8m_segments import flag_defs
    defined = {flag.name for flag in flags.FLAGS.get_flags_for_module(flag_defs)}
    grouped = [name for _, names in flag_defs.GROUPS for name in names]
    assert sorted(grouped) == sorted(defined)


def test_the_commands_import_together():
    """One process can hold every command: no flag is defined twice, so
    tests (and the demo's table) can run them in-process."""
    modules = ", ".join(f"yt8m_segments.{name}" for name in (
        "train", "inference", "eval", "export", "ensemble", "stacker", "swa",
        "beam_inference", "synthetic", "demo", "models.__main__"))
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True,
                   capture_output=True)


def test_recipes_resolve_by_name_and_reject_unknown_ones():
    assert "demo" in cli.recipe_names() and "p4_nextvlad" in cli.recipe_names()
    assert cli.expand_recipes(["x", "--recipe", "demo", "--a=1"]) == [
        "x", f"--flagfile={os.path.join(cli.RECIPES_DIR, 'demo.flags')}", "--a=1"]
    result = command("train", "--recipe=nope", expect_ok=False)
    assert result.returncode == 2
    assert "no recipe 'nope'" in result.stderr and "p4_nextvlad" in result.stderr


def test_an_input_error_of_a_library_command_is_exit_1(tmp_path):
    """ensemble and stacker no longer turn input errors into usage errors."""
    result = command("ensemble", f"--caches={tmp_path}/a,{tmp_path}/b",
                     f"--output_cache={tmp_path}/out", expect_ok=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no probability cache at {tmp_path}/a"


def test_models_lists_the_zoo_with_absl_flags():
    result = command("models", "--list", "--num_classes=100",
                     "--model_hparams=moe_num_mixtures=1")
    rows = {line.split()[0]: line.split()[2] for line in result.stdout.splitlines()[2:]}
    assert "DBoF" in rows and "NeXtVLAD" in rows
    assert not any(banner in result.stderr for banner in BANNERS)
    assert "  --[no]list:" in command("models", "--help").stdout
    misspelled = command("models", "--lst", expect_ok=False)
    assert misspelled.returncode == 2
    assert misspelled.stderr.splitlines() == [
        "error: Unknown command line flag 'lst'", "(see __main__.py --help)"]


@pytest.mark.parametrize("arg, message", [
    ("--runner=DirectRunner", "Unknown command line flag 'runner' (Beam's options "
                              "go after --)"),
    ("--tf_logs=maybe", "flag --tf_logs=maybe: ('Non-boolean argument to "
                        "boolean flag', 'maybe')")])
def test_a_bad_flag_is_a_usage_error(arg, message, capsys):
    """Not absl's 'FATAL Flags parsing error' and exit 1; a command may add a
    hint to an unknown flag's message (beam_inference: Beam's options)."""
    from absl import flags
    parse = cli.flags_parser(unknown_flag_hint="Beam's options go after --")
    try:
        with pytest.raises(SystemExit) as done:
            parse(["command", arg])
    finally:
        flags.FLAGS.unparse_flags()
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[0] == f"error: {message}"
