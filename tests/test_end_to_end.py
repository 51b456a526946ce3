"""The whole path through the real command lines, on a tiny generated dataset."""

import os
import re
import shutil

import pytest
from command_runner import (held_by_another_process, run_command,
                            run_with_permissions)

TINY_MODEL = ["--model=DBoF", "--video_level_classifier_model=MoE",
              "--dbof_cluster_size=16", "--dbof_hidden_size=8",
              "--batch_size=16", "--num_epochs=1", "--num_classes=100"]


command = run_command


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    command("synthetic", f"--output_dir={data}", "--num_train_videos=40",
            "--num_validate_videos=16", "--num_test_videos=10", "--seed=3",
            "--num_classes=100", "--num_active_classes=8",
            "--num_segment_classes=4", "--min_video_frames=10",
            "--max_video_frames=26")
    command("train", "--stage=pretrain", *TINY_MODEL,
            f"--train_data_pattern={data}/train-*.tfrecord",
            f"--train_dir={root}/pretrain")
    command("train", "--stage=finetune", *TINY_MODEL,
            f"--train_data_pattern={data}/validate-*.tfrecord",
            f"--pretrain_dir={root}/pretrain", f"--train_dir={root}/finetune")
    return root


def test_inference_writes_a_submission_that_eval_scores(runs):
    data = runs / "data"
    submission = runs / "submission.csv"
    command("inference", f"--train_dir={runs}/finetune",
            f"--input_data_pattern={data}/test-*.tfrecord",
            f"--output_file={submission}", "--segment_max_pred=7")
    lines = submission.read_text().splitlines()
    assert lines[0] == "Class,Segments"
    segment_classes = sorted(
        int(x) for x in (data / "segment_label_ids.csv").read_text().split()[1:])
    assert [int(line.split(",")[0]) for line in lines[1:]] == segment_classes
    for line in lines[1:]:
        segments = line.split(",")[1].split()
        assert len(segments) == 7
        assert all(re.fullmatch(r"\w{4}:\d*[05]", s) for s in segments)

    result = command("eval", f"--submission_file={submission}",
                     f"--ground_truth_file={data}/test_ground_truth.csv",
                     "--segment_max_pred=7")
    name, value = result.stdout.strip().splitlines()[-1].split()
    assert name == "MAP@7" and 0.0 <= float(value) <= 1.0


def test_eval_scores_a_model_on_validate_records(runs):
    result = command("eval", f"--eval_data_pattern={runs}/data/validate-*.tfrecord",
                     f"--train_dir={runs}/finetune", "--segment_max_pred=50",
                     "--num_classes=100")
    name, value = result.stdout.strip().splitlines()[-1].split()
    assert name == "MAP@50" and 0.0 < float(value) <= 1.0


def test_pretrained_run_needs_the_segment_classes(runs):
    result = command("inference", f"--train_dir={runs}/pretrain",
                     f"--input_data_pattern={runs}/data/test-*.tfrecord",
                     f"--output_file={runs}/x.csv", expect_ok=False)
    assert "segment_labels_file" in result.stderr
    command("inference", f"--train_dir={runs}/pretrain",
            f"--input_data_pattern={runs}/data/test-*.tfrecord",
            f"--output_file={runs}/x.csv",
            f"--segment_labels_file={runs}/data/segment_label_ids.csv")
    assert (runs / "x.csv").read_text().startswith("Class,Segments\n")


def test_rerunning_a_finished_run_resumes_and_trains_no_more(runs):
    result = command("train", "--stage=pretrain", *TINY_MODEL,
                     f"--train_data_pattern={runs}/data/train-*.tfrecord",
                     f"--train_dir={runs}/pretrain")
    assert "resumed from" in result.stderr
    steps = re.findall(r"after (\d+) steps", result.stderr)
    assert steps and steps[-1] == re.findall(
        r"ckpt-(\d+)", result.stderr)[0]


def test_a_pattern_matching_nothing_names_the_pattern(runs):
    result = command("inference", f"--train_dir={runs}/finetune",
                     f"--input_data_pattern={runs}/nothing-*.tfrecord",
                     f"--output_file={runs}/y.csv", expect_ok=False)
    assert "nothing-*.tfrecord" in result.stderr
    assert not (runs / "y.csv").exists()


@pytest.mark.heavy
def test_demo_beats_its_baselines(tmp_path):
    """The full-size demo: stage 1 near or above the ridge at video level,
    fine-tuning above the window-mean logistic and within 85% of the oracle."""
    result = command("demo", f"--output_dir={tmp_path}")
    table = {name: float(value) for name, value in re.findall(
        r"^(.+?)\s{2,}(\d\.\d{4})$", result.stdout, re.M)}
    pretrained = table["pretrained only (video labels)"]
    finetuned = table["fine-tuned on rated segments"]
    assert finetuned > pretrained + 0.1
    assert finetuned > 5 * table["random scores"]
    assert finetuned > table["window-mean logistic (baseline)"]
    assert finetuned > 0.85 * table["oracle: true class patterns"]
    assert table["pretrained run"] > 0.9 * table[
        "ridge on mean frames (baseline)"]


def test_mixture_with_context_frames_through_both_stages(runs):
    common = ["--recipe=tiny_mix_nextvlad", "--num_classes=100", "--batch_size=16",
              "--num_epochs=1"]
    command("train", "--stage=pretrain", *common,
            f"--train_data_pattern={runs}/data/train-*.tfrecord",
            f"--train_dir={runs}/mix_pretrain")
    command("train", "--stage=finetune", *common, "--context_frames=5",
            f"--train_data_pattern={runs}/data/validate-*.tfrecord",
            f"--pretrain_dir={runs}/mix_pretrain",
            f"--train_dir={runs}/mix_finetune")
    config = (runs / "mix_finetune" / "run_config.json").read_text()
    assert '"context_frames": 5' in config
    result = command("eval", f"--eval_data_pattern={runs}/data/validate-*.tfrecord",
                     f"--train_dir={runs}/mix_finetune", "--segment_max_pred=50",
                     "--num_classes=100")
    assert result.stdout.strip().splitlines()[-1].startswith("MAP@50 ")


def test_a_directory_another_job_holds_is_refused_in_one_line(runs, tmp_path):
    """train, inference and export refuse an output directory that a running
    job holds, naming it (yt8m_segments/locking.py), before any work."""
    data = runs / "data"
    cases = [
        ("train", tmp_path / "run", [
            "--stage=pretrain", *TINY_MODEL, f"--train_dir={tmp_path}/run",
            f"--train_data_pattern={data}/train-*.tfrecord"]),
        ("inference", tmp_path / "cache", [
            f"--train_dir={runs}/finetune", f"--cache_dir={tmp_path}/cache",
            f"--input_data_pattern={data}/test-*.tfrecord"]),
        ("export", tmp_path / "export", [
            f"--train_dir={runs}/finetune", f"--export_dir={tmp_path}/export"]),
    ]
    for name, directory, args in cases:
        with held_by_another_process(directory) as holder:
            result = command(name, *args, expect_ok=False)
        assert result.returncode == 1, name
        errors = [line for line in result.stderr.splitlines()
                  if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith(
            f"error: {directory} is in use by host="), (name, result.stderr)
        assert f"pid={holder.pid} " in errors[0]
        assert os.listdir(directory) == [], name  # nothing written


def test_files_the_job_may_not_read_are_named_in_one_line(runs, tmp_path):
    """Permission bits hold (root's overrides dropped): an unreadable record
    file, model or data directory is one line naming it. Before: TF's error
    wrapped in its op's name, Keras' "File not found" for a model that is
    there, and "no file matches" for a directory the job may not list."""
    data, run = tmp_path / "data", tmp_path / "finetune"
    shutil.copytree(runs / "data", data)
    shutil.copytree(runs / "finetune", run)
    test_file, validate_file = (sorted(data.glob(f"{split}-*.tfrecord"))[1]
                                for split in ("test", "validate"))
    closed = tmp_path / "closed"
    closed.mkdir()
    shutil.copy(test_file, closed)
    for path in (test_file, validate_file, run / "model.keras", closed):
        path.chmod(0)
    inference = [f"--train_dir={runs}/finetune",
                 f"--output_file={tmp_path}/out.csv"]
    cases = {
        f"cannot read {test_file}: Permission denied": (
            "inference", [*inference, f"--input_data_pattern={data}/test-*"]),
        f"cannot read {validate_file}: Permission denied": (
            "train", ["--stage=finetune", *TINY_MODEL,
                      f"--segment_labels_file={data}/segment_label_ids.csv",
                      f"--train_data_pattern={data}/validate-*",
                      "--compression=none",  # met in the training loop
                      f"--pretrain_dir={runs}/pretrain",
                      f"--train_dir={tmp_path}/retrain"]),
        f"cannot read {run}/model.keras: Permission denied": (
            "eval", [f"--train_dir={run}",
                     f"--eval_data_pattern={runs}/data/validate-*"]),
        f"no file matches the data pattern '{closed}/*' (cannot list "
        f"{closed}: Permission denied)": (
            "inference", [*inference, f"--input_data_pattern={closed}/*"]),
    }
    results = run_with_permissions(list(cases.values()))
    for message, result in zip(cases, results):
        assert result.returncode == 1, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines()
                  if line.startswith("error: ")]
        assert errors == [f"error: {message}"], result.stderr[-2000:]
    assert not (tmp_path / "out.csv").exists()
