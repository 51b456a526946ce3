"""beam_inference.py (the library: prediction/beam.py): the Beam pipeline
writes inference.py's caches, fails on bad records as inference.py does, and
runs on 2 DirectRunner processes."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("apache_beam")

import tensorflow as tf  # noqa: E402

from command_runner import run_command  # noqa: E402
from conftest import frames_with_values  # noqa: E402
from yt8m_segments.postprocess import cache  # noqa: E402
from yt8m_segments.prediction import cache_builder  # noqa: E402
from yt8m_segments.prediction import export  # noqa: E402
from yt8m_segments.postprocess import refine  # noqa: E402
from yt8m_segments.training import run_artifacts  # noqa: E402
from yt8m_segments.postprocess import submission  # noqa: E402
from yt8m_segments.data import synthetic  # noqa: E402
from yt8m_segments.data import reader  # noqa: E402
from yt8m_segments.data import records  # noqa: E402
from yt8m_segments.data import views  # noqa: E402
from yt8m_segments.data.features import FeatureSpec  # noqa: E402
from yt8m_segments.prediction import beam  # noqa: E402
from yt8m_segments.models.registry import ModelConfig, build_model  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
CONTEXT_FRAMES = 2
SEGMENT_CLASSES = [3, 5, 7, 9, 11, 13]
# fp16 has 11 significant bits: probabilities in [0, 1] round within 2^-11.
FP16 = dict(atol=2 ** -11, rtol=2 ** -10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam")
    synthetic.generate(str(root / "data"), 2, 2, 12, seed=5, num_classes=100,
                       num_active_classes=8, num_segment_classes=4,
                       min_frames=10, max_frames=33, num_files_per_split=3)
    tf.keras.utils.set_random_seed(11)
    # Untrained weights: enough to compare two ways of computing one function
    # (zero biases, not the prior start, so that the outputs spread).
    segment = ModelConfig("NeXtVLAD", "Logistic", len(SEGMENT_CLASSES), 1152,
                          {"nextvlad_cluster_size": 4, "nextvlad_groups": 4,
                           "hidden_size": 16, "gating_reduction": 4,
                           "initial_probability": None})
    run_artifacts.save_run(str(root / "segment"), build_model(segment), segment,
                           SEGMENT_CLASSES, FeatureSpec(),
                           extra={"stage": "finetune",
                                  "context_frames": CONTEXT_FRAMES})
    video = ModelConfig("DBoF", "MoE", 100, 1152, {"dbof_cluster_size": 16,
                                                   "dbof_hidden_size": 8,
                                                   "initial_probability": None})
    run_artifacts.save_run(str(root / "video"), build_model(video), video,
                           list(range(100)), FeatureSpec(),
                           extra={"stage": "pretrain"})
    export_dir = export.export(str(root / "segment"), str(root / "export"),
                               video_train_dir=str(root / "video"))
    run = run_artifacts.Run(str(root / "segment"))
    files = views.list_files(f"{root}/data/test-*.tfrecord")
    reference = cache_builder.build_cache(
        str(root / "reference"), run, SEGMENT_CLASSES, files, batch_size=8,
        context_frames=CONTEXT_FRAMES,
        video_run=run_artifacts.Run(str(root / "video")), num_classes=100)
    return {"root": root, "export_dir": export_dir, "files": files,
            "pattern": f"{root}/data/test-*.tfrecord", "run": run,
            "reference": reference}


def _run(world, cache_dir, *extra, pattern=None, expect_ok=True):
    """The beam_inference command, in-process (DirectRunner)."""
    return run_command("beam_inference",
                       f"--saved_model_dir={world['export_dir']}",
                       f"--input_data_pattern={pattern or world['pattern']}",
                       f"--cache_dir={cache_dir}", *extra, expect_ok=expect_ok)


def _beam(world, cache_dir, *extra, pattern=None):
    """The cache the command wrote."""
    result = _run(world, cache_dir, *extra, pattern=pattern)
    opened = cache.ProbabilityCache.open(str(cache_dir))
    assert result.stdout.strip() == (f"{opened.path}: {opened.shape[0]} "
                                     f"segments x {opened.shape[1]} classes")
    return opened


def _beam_error(world, cache_dir, *extra, pattern=None):
    """The command's one-line error (exit 1)."""
    result = _run(world, cache_dir, *extra, pattern=pattern, expect_ok=False)
    assert result.returncode == 1, result.stderr[-3000:]
    return result.stderr


def _assert_same(opened, reference):
    assert sorted(opened.class_ids) == sorted(reference.class_ids)
    assert list(opened.class_ids) == list(reference.class_ids)
    order, ref_order = np.argsort(opened.segment_ids), np.argsort(reference.segment_ids)
    np.testing.assert_array_equal(opened.segment_ids[order],
                                  reference.segment_ids[ref_order])
    assert reference.segment_probs.std() > 1e-3  # not constants
    assert opened.segment_probs.dtype == np.float16
    np.testing.assert_allclose(
        np.asarray(opened.segment_probs[order], np.float32),
        np.asarray(reference.segment_probs[ref_order], np.float32), **FP16)
    vorder, ref_vorder = np.argsort(opened.video_ids), np.argsort(reference.video_ids)
    np.testing.assert_array_equal(opened.video_ids[vorder],
                                  reference.video_ids[ref_vorder])
    assert list(opened.video_class_ids) == list(reference.video_class_ids)
    np.testing.assert_allclose(
        np.asarray(opened.video_probs[vorder], np.float32),
        np.asarray(reference.video_probs[ref_vorder], np.float32), **FP16)


def test_beam_cache_equals_inference_cache(world, tmp_path):
    opened = _beam(world, tmp_path / "beam", "--serving_batch_size=4")
    _assert_same(opened, world["reference"])
    assert opened.meta["input_files"] == world["files"]
    assert opened.meta["fingerprint"] == beam.savedmodel_fingerprint(
        world["export_dir"])
    assert opened.meta["video_fingerprint"] == opened.meta["fingerprint"]
    # Selection and refinement read it unchanged.
    options = refine.RefineOptions("topk", topk=3)
    submission.write_submission_from_cache(str(tmp_path / "beam.csv"), opened,
                                           5, options)
    submission.write_submission_from_cache(str(tmp_path / "ref.csv"),
                                           world["reference"], 5, options)
    beam_rows = submission.read_submission(str(tmp_path / "beam.csv"))
    assert len(beam_rows) == len(submission.read_submission(
        str(tmp_path / "ref.csv")))


def test_two_worker_processes_write_shards_that_inference_merges(world, tmp_path):
    out = tmp_path / "mp"
    result = subprocess.run(
        [sys.executable, "-m", "yt8m_segments.beam_inference",
         f"--saved_model_dir={world['export_dir']}",
         f"--input_data_pattern={world['pattern']}", f"--cache_dir={out}",
         "--num_shards=2", "--nomerge", "--serving_batch_size=2",
         "--", "--direct_running_mode=multi_processing",
         "--direct_num_workers=2"],
        capture_output=True, text=True, env=ENV, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(out / beam.SHARDS)
    shards = [beam.shard_path(str(out), i, 2) for i in range(2)]
    assert sorted(os.listdir(out / "shards")) == sorted(
        os.path.basename(s) for s in shards)
    assert not os.path.exists(out / cache.META)  # --nomerge
    for index, shard in enumerate(shards):
        opened = cache.ProbabilityCache.open(shard)
        assert opened.meta["input_files"] == world["files"][index::2]
        assert opened.meta["shard_index"] == index
    # Each worker process loaded the SavedModel itself.
    pids = {line.split("(pid ")[1].split(")")[0]
            for line in result.stderr.splitlines()
            if "loaded " in line and "(pid " in line}
    assert len(pids) == 2, result.stderr[-3000:]
    # The existing merge command reads Beam's shards unchanged.
    merged = subprocess.run(
        [sys.executable, "-m", "yt8m_segments.inference",
         f"--merge_caches={','.join(shards)}", f"--cache_dir={out}/merged"],
        capture_output=True, text=True, env=ENV, check=False)
    assert merged.returncode == 0, merged.stderr[-3000:]
    _assert_same(cache.ProbabilityCache.open(str(out / "merged")),
                 world["reference"])


def _write_bad_file(path, bad_video=None):
    videos = [dict(video_id=f"ok{i}", labels=[1], features=frames_with_values(12))
              for i in range(3)]
    if bad_video is not None:
        videos[1] = bad_video
    records.write_records(str(path), [records.make_frame_example(**v)
                                      for v in videos])
    return str(path)


def _inference_error(world, path, tmp_path):
    with pytest.raises(reader.InputError) as caught:
        cache_builder.build_cache(str(tmp_path / "ref_bad"), world["run"],
                                  SEGMENT_CLASSES, [path], batch_size=8,
                                  context_frames=CONTEXT_FRAMES)
    return str(caught.value)


def test_bad_frame_fails_with_inference_message(world, tmp_path):
    path = _write_bad_file(tmp_path / "bad-frame.tfrecord", dict(
        video_id="size", labels=[1],
        features={"rgb": np.zeros((3, 1000), np.uint8),
                  "audio": np.zeros((3, 128), np.uint8)}))
    expected = _inference_error(world, path, tmp_path)
    assert expected == (f"a 'rgb' frame is not 1024 bytes file: {path} "
                        "record: 1 video id: size")
    assert expected in _beam_error(world, tmp_path / "beam_bad",
                                   "--serving_batch_size=1", pattern=path)
    assert not os.path.exists(tmp_path / "beam_bad" / cache.META)


def test_feature_of_another_type_fails_with_inference_message(world, tmp_path):
    """TF's parser names no record; both find it (found by the fuzz bench:
    Beam gave TF's raw error)."""
    path = _write_bad_file(tmp_path / "float-labels.tfrecord")
    examples = [tf.train.SequenceExample.FromString(r.numpy())
                for r in tf.data.TFRecordDataset(path)]
    examples[1].context.feature["labels"].float_list.value.append(1.0)
    records.write_records(path, examples)
    expected = _inference_error(world, path, tmp_path)
    assert expected == ("feature 'labels' holds float values, not int64 "
                        f"file: {path} record: 1 video id: ok1")
    assert expected in _beam_error(world, tmp_path / "beam_bad", pattern=path)


def test_corrupt_record_fails_with_inference_message(world, tmp_path):
    path = _write_bad_file(tmp_path / "corrupt.tfrecord")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # inside record 1 of 3
    open(path, "wb").write(bytes(data))
    with pytest.raises(reader.CorruptRecordError) as caught:
        cache_builder.build_cache(str(tmp_path / "ref_bad"), world["run"],
                                  SEGMENT_CLASSES, [path], batch_size=8,
                                  context_frames=CONTEXT_FRAMES)
    expected = str(caught.value)
    assert f"{path}, record 1" in expected
    assert expected in _beam_error(world, tmp_path / "beam_bad", pattern=path)
    # Skipping loses only that record.
    opened = _beam(world, tmp_path / "skipped", "--skip_corrupt_records",
                   pattern=path)
    assert sorted({s.split(":")[0] for s in opened.segment_ids}) == ["ok0", "ok2"]


def test_publish_copies_a_committed_cache_meta_last(world, tmp_path):
    source = world["reference"]
    target = str(tmp_path / "published")
    beam.publish(source.path, target)
    copied = cache.ProbabilityCache.open(target)
    np.testing.assert_array_equal(copied.segment_probs, source.segment_probs)
    np.testing.assert_array_equal(copied.segment_ids, source.segment_ids)
    assert not os.path.exists(os.path.join(target, "parts"))  # files only
    assert beam.is_remote("gs://b/c") and not beam.is_remote("/c")


def test_launcher_checks():
    assert beam.shard_path("/c", 0, 1) == "/c"
    assert beam.shard_path("/c", 1, 3) == "/c/shards/shard-00001-of-00003"
    with pytest.raises(FileNotFoundError, match="no file matches"):
        beam.list_files("/nonexistent/test-*.tfrecord")
    with pytest.raises(FileNotFoundError, match="version directory"):
        beam.serving_outputs("/nonexistent")
