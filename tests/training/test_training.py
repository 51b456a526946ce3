"""The training loop: resume after SIGKILL, strategies, EMA, validation."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from command_runner import fill, run_command, small_disk
from yt8m_segments.postprocess import cache as cache_lib
from yt8m_segments.data import synthetic
from yt8m_segments.training import run_artifacts
from yt8m_segments.training import trainer as trainer_lib

TINY = ["--stage=pretrain", "--batch_size=8", "--num_classes=100",
        "--log_every_steps=1000"]
LINEAR = ["--model=AveragePooling", "--video_level_classifier_model=MoE"]
DBOF = ["--model=DBoF", "--dbof_cluster_size=16", "--dbof_hidden_size=8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    synthetic.generate(str(root), 48, 16, 4, seed=5, num_classes=100,
                       num_active_classes=8, num_segment_classes=4,
                       min_frames=10, max_frames=20)
    return root


def train_command(*args):
    return [sys.executable, "-m", "yt8m_segments.train", *args]


def run(args):
    """train.py in this process; its log."""
    return run_command("train", *args).stderr


def run_process(args):
    """train.py in its own process (to be killed, or to see logical CPU
    devices set before TensorFlow starts); its log."""
    result = subprocess.run(train_command(*args), capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def weights(train_dir):
    return run_artifacts.Run(train_dir).model.get_weights()


def test_sigkill_then_rerun_resumes_to_the_same_weights(data, tmp_path):
    args = [*TINY, *DBOF, "--num_epochs=3", "--checkpoint_every_steps=2",
            f"--train_data_pattern={data}/train-*.tfrecord"]
    run_process([*args, f"--train_dir={tmp_path}/whole"])

    killed = tmp_path / "killed"
    process = subprocess.Popen(train_command(*args, f"--train_dir={killed}"),
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    marker = killed / "checkpoints" / "ckpt-8.index"
    deadline = time.time() + 120
    while not marker.exists() and process.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.keras").exists()

    log = run_process([*args, f"--train_dir={killed}"])
    assert re.search(r"resumed from \S+ckpt-\d+ at step \d+", log)
    for a, b in zip(weights(killed), weights(tmp_path / "whole")):
        np.testing.assert_array_equal(a, b)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(args, train_dirs):
    """train.py as a 2-worker cluster (one CPU device each); the logs."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(len(train_dirs))]
    processes = []
    for index, train_dir in enumerate(train_dirs):
        config = {"cluster": {"worker": workers},
                  "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            train_command(*args, f"--train_dir={train_dir}"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TF_CONFIG": json.dumps(config)}))
    logs = [p.communicate(timeout=240)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], logs[0][-2000:]
    return logs



# 48 videos in batches of 10: each epoch ends on a short batch of 8 (step 5).
SHORT_LAST_BATCH = [*TINY, *DBOF, "--batch_size=10", "--num_epochs=2",
                    "--checkpoint_every_steps=2", "--keep_checkpoints=10"]


def weight_files(train_dir):
    """{ckpt-N.weights.h5: its arrays} of a run."""
    directory = train_dir / "checkpoints"
    return {name: [np.asarray(w) for w in _h5_arrays(directory / name)]
            for name in sorted(os.listdir(directory)) if name.endswith(".weights.h5")}


def _h5_arrays(path):
    import h5py
    arrays = []
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.append(item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    train_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    run([*SHORT_LAST_BATCH, f"--train_data_pattern={data}/train-*.tfrecord",
         f"--train_dir={train_dir}"])
    return train_dir


def test_a_resume_on_an_epochs_short_batch_ends_with_the_same_weights(
        data, tmp_path, uninterrupted):
    """Resumed from step 4, the run's first batch is the epoch's short one.
    The train step was traced on the first batch's shape, so the resumed
    process ran other graphs than the uninterrupted one and ended 1e-6 away
    (found by bench/kill_points.py); it is now traced for any batch size."""
    resumed = tmp_path / "resumed"
    os.makedirs(resumed / "checkpoints")
    for name in os.listdir(uninterrupted / "checkpoints"):
        if name.startswith("ckpt-4."):
            shutil.copy(uninterrupted / "checkpoints" / name, resumed / "checkpoints")
    (resumed / "checkpoints" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-4"\nall_model_checkpoint_paths: "ckpt-4"\n')
    log = run([*SHORT_LAST_BATCH, f"--train_data_pattern={data}/train-*.tfrecord",
               f"--train_dir={resumed}"])
    assert "at step 4" in log
    for a, b in zip(weights(resumed), weights(uninterrupted)):
        np.testing.assert_array_equal(a, b)


def test_a_kill_at_a_checkpoint_leaves_its_weights_for_swa(
        data, tmp_path, uninterrupted, monkeypatch):
    """Killed after step 4's checkpoint but before its ckpt-4.weights.h5,
    the rerun resumed from step 4 and never wrote them: swa missed the step
    (found by bench/kill_points.py). The rerun now writes them from the
    checkpoint it resumes from."""
    killed = tmp_path / "killed"
    args = [*SHORT_LAST_BATCH, f"--train_data_pattern={data}/train-*.tfrecord",
            f"--train_dir={killed}"]
    real = trainer_lib.atomic_path

    def atomic_path(path):
        if path.endswith("ckpt-4.weights.h5"):
            raise KeyboardInterrupt("killed while writing step 4's weights")
        return real(path)
    monkeypatch.setattr(trainer_lib, "atomic_path", atomic_path)
    with pytest.raises(KeyboardInterrupt):
        run(args)
    monkeypatch.undo()
    run(args)
    found, expected = weight_files(killed), weight_files(uninterrupted)
    assert sorted(found) == sorted(expected)
    for name in expected:
        for a, b in zip(found[name], expected[name]):
            np.testing.assert_array_equal(a, b)


def test_a_listed_checkpoint_is_never_rewritten(data, tmp_path, monkeypatch):
    """The last step's checkpoint was saved by the loop and again at the
    end, in place, while TF's state file already listed it: a kill in the
    rewrite tore the checkpoint a rerun restores (found by
    bench/kill_points.py). A rerun of the finished run saves none."""
    saved = []
    real = tf.train.CheckpointManager.save

    def save(manager, checkpoint_number=None, **kwargs):
        saved.append(checkpoint_number)
        return real(manager, checkpoint_number=checkpoint_number, **kwargs)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    args = [*TINY, *LINEAR, "--checkpoint_every_steps=2",
            f"--train_data_pattern={data}/train-*.tfrecord", f"--train_dir={tmp_path}/run"]
    run([*args, "--max_steps=4"])
    assert saved == [2, 4]
    run([*args, "--max_steps=4"])
    assert saved == [2, 4]
    run([*args, "--max_steps=5"])  # a last step off the grid
    assert saved == [2, 4, 5]

def test_strategies_train_as_one_device(data, tmp_path):
    """Batch norms (the DBoF's; dropout off, so only the statistics and the
    batches can differ), the training files read in order (--noshuffle), so
    every strategy sees the same global batches: 2 files of 24 videos, batch
    8; one device, mirrored replica r and worker r all take 4 videos of
    file r a step.

    Synchronized statistics (the default) keep two mirrored replicas within
    5e-4 of one device after 5 steps; per-replica ones drift by over 1e-2
    (measured 2e-5 and 0.37). Two workers end within 5e-4 of the mirrored
    run's weights, every tensor compared (measured 3e-5: summation order)."""
    args = [*TINY, *DBOF, "--model_hparams=dropout=0", "--max_steps=5",
            "--noshuffle", "--num_sample_frames=0",
            "--checkpoint_every_steps=2",
            f"--train_data_pattern={data}/train-*.tfrecord"]
    mirrored = ["--strategy=mirrored", "--num_cpu_devices=2"]
    run_process([*args, f"--train_dir={tmp_path}/default"])
    log = run_process([*args, *mirrored, f"--train_dir={tmp_path}/synchronized"])
    assert "2 replica(s)" in log
    run_process([*args, *mirrored, "--nosync_batch_norm",
                 f"--train_dir={tmp_path}/per_replica"])
    logs = run_workers([*args, "--strategy=multi_worker"],
                       [tmp_path / "worker0", tmp_path / "worker1"])
    one_device = weights(tmp_path / "default")

    def largest_difference(name, reference=one_device):
        return max(float(np.max(np.abs(a - b)))
                   for a, b in zip(reference, weights(tmp_path / name)))
    assert largest_difference("synchronized") < 5e-4
    assert largest_difference("per_replica") > 1e-2
    assert largest_difference(
        "worker0", weights(tmp_path / "synchronized")) < 5e-4
    checksums = [re.search(r"final weights checksum (\S+) after 5 steps",
                           log).group(1) for log in logs]
    assert checksums[0] == checksums[1]
    assert not (tmp_path / "worker1").exists()  # only the chief saves


def test_multi_worker_needs_max_steps(data, tmp_path):
    result = run_command("train", *TINY, *LINEAR, "--strategy=multi_worker",
                         f"--train_data_pattern={data}/train-*.tfrecord",
                         f"--train_dir={tmp_path}", expect_ok=False)
    assert result.returncode == 2 and "--max_steps" in result.stderr


def test_ema_and_validation_outputs(data, tmp_path):
    log = run([*TINY, *DBOF, "--num_epochs=2", "--ema_momentum=0.5",
               "--eval_every_steps=3", "--checkpoint_every_steps=100",
               f"--eval_data_pattern={data}/validate-*.tfrecord",
               f"--train_data_pattern={data}/train-*.tfrecord",
               f"--train_dir={tmp_path}"])
    assert re.search(r"step 3: validation MAP \d\.\d{4}", log)
    assert (tmp_path / "best" / "model.keras").exists()
    assert tf.io.gfile.glob(str(tmp_path / "summaries" / "events.*"))
    # The saved model holds the EMA weights; the checkpoint the raw ones.
    step = int(re.search(r"after (\d+) steps", log).group(1))
    model = run_artifacts.Run(str(tmp_path)).model
    saved = model.get_weights()
    model.load_weights(trainer_lib.weights_path(str(tmp_path), step))
    assert any(not np.array_equal(a, b)
               for a, b in zip(saved, model.get_weights()))


def test_ema_weights_swaps_in_the_average_and_back():
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    optimizer = keras.optimizers.SGD(1.0, use_ema=True, ema_momentum=0.5)
    optimizer.build([variable])
    values = []
    for gradient in ([1.0, 1.0], [2.0, 0.0], [0.0, 4.0]):
        optimizer.apply_gradients([(np.array(gradient, np.float32), variable)])
        values.append(variable.numpy().copy())
    # Keras: the first update copies the variable, later ones blend.
    average = values[0]
    for value in values[1:]:
        average = 0.5 * average + 0.5 * value
    with trainer_lib.ema_weights(optimizer):
        np.testing.assert_allclose(variable.numpy(), average)
    np.testing.assert_allclose(variable.numpy(), values[-1])


def test_start_new_model_discards_checkpoints(data, tmp_path):
    args = [*TINY, *LINEAR, "--max_steps=2", "--checkpoint_every_steps=1",
            f"--train_data_pattern={data}/train-*.tfrecord",
            f"--train_dir={tmp_path}"]
    run(args)
    assert "resumed" in run(args)
    assert "resumed" not in run([*args, "--start_new_model"])


def test_finetune_with_each_extra_loss(data, tmp_path):
    run([*TINY, *DBOF, "--max_steps=2",
         f"--train_data_pattern={data}/train-*.tfrecord",
         f"--train_dir={tmp_path}/pretrain"])
    finetune = ["--stage=finetune", "--batch_size=8", "--num_classes=100",
                "--max_steps=2", f"--pretrain_dir={tmp_path}/pretrain",
                f"--train_data_pattern={data}/validate-*.tfrecord"]
    run([*finetune, "--segment_loss=seventh_place",
         f"--train_dir={tmp_path}/seventh"])
    # From the rated-segment cache: built once, then reused.
    cached = [*finetune, f"--segment_cache_dir={tmp_path}/segments",
              f"--train_dir={tmp_path}/cached"]
    assert "building segment cache" in run(cached)
    log = run([*cached, "--start_new_model"])
    assert "is current" in log and "building" not in log
    assert (tmp_path / "cached" / "model.keras").exists()
    run([*finetune, f"--mean_teacher_data_pattern={data}/test-*.tfrecord",
         "--context_frames=2", "--checkpoint_every_steps=1",
         f"--train_dir={tmp_path}/mean_teacher"])
    variables = [name for name, _ in tf.train.list_variables(
        tf.train.latest_checkpoint(str(tmp_path / "mean_teacher" / "checkpoints")))]
    assert any(name.startswith("mean_teacher/") for name in variables)

    # A teacher cache over the rated segments' ids, as soft targets.
    from yt8m_segments.data import views
    from yt8m_segments.data.features import FeatureSpec
    ids = np.concatenate([b["segment_id"].numpy() for b in views.test_segment_dataset(
        f"{data}/validate-*.tfrecord", FeatureSpec(), 64)]).astype(str)
    class_ids = json.loads((tmp_path / "seventh" / "run_config.json")
                           .read_text())["class_ids"]
    teacher = cache_lib.write_cache(
        str(tmp_path / "teacher_cache"), ids,
        np.full((len(ids), len(class_ids)), 0.25, np.float16), class_ids, {})
    run([*finetune, f"--teacher_cache_dir={teacher}",
         f"--train_dir={tmp_path}/distilled"])
    assert (tmp_path / "distilled" / "model.keras").exists()


def test_train_flags_give_the_library_defaults():
    """train.py with only the required flags runs task.TrainConfig()'s
    defaults: a default changed on one side only fails here."""
    from absl import flags
    from yt8m_segments import train
    from yt8m_segments.training import task
    try:
        flags.FLAGS(["train", "--train_data_pattern=p", "--train_dir=d"])
        config = train.config_from_flags()
    finally:
        flags.FLAGS.unparse_flags()
    assert config == task.TrainConfig(train_data_pattern="p", train_dir="d")


def test_a_bad_combination_is_a_usage_error_before_any_work(tmp_path):
    from absl import app
    from yt8m_segments.training import task
    with pytest.raises(app.UsageError, match="--pretrain_dir"):
        task.run(task.TrainConfig(stage="finetune", train_data_pattern="p",
                                  train_dir=str(tmp_path / "run")))
    with pytest.raises(app.UsageError, match="--video_cache_dir is for --stage=pretrain"):
        task.run(task.TrainConfig(stage="finetune", pretrain_dir="x",
                                  video_cache_dir="c", train_data_pattern="p",
                                  train_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_a_full_disk_at_a_checkpoint_names_it_and_the_rerun_completes(data, tmp_path):
    """Checkpointing on a full disk: one line naming the checkpoint, the
    earlier checkpoints intact; after freeing space the same command resumes
    from the last good one and finishes."""
    with small_disk(tmp_path / "disk", size="64m") as disk:
        run_dir = disk / "run"
        args = [*TINY, *LINEAR, "--checkpoint_every_steps=1", f"--train_dir={run_dir}",
                f"--train_data_pattern={data}/train-*.tfrecord"]
        run_command("train", *args, "--max_steps=2")
        filler = fill(disk, leave=1 << 20)  # room for summaries, not a checkpoint
        result = run_command("train", *args, "--max_steps=4", expect_ok=False)
        assert result.returncode == 1
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert errors == [f"error: cannot write {run_dir}/checkpoints/ckpt-3: "
                          "No space left on device"], result.stderr[-2000:]
        os.remove(filler)
        result = run_command("train", *args, "--max_steps=4")
        assert f"resumed from {run_dir}/checkpoints/ckpt-2 at step 2" in result.stderr
        assert (run_dir / "model.keras").exists()
