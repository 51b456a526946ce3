"""inference.py: caches, resume, shards + merge, refinement, the CSV from a cache."""

import os

import numpy as np
import pytest
import tensorflow as tf

from test_end_to_end import TINY_MODEL, command
from yt8m_segments.postprocess import cache
from yt8m_segments.evaluation import evaluate
from yt8m_segments.prediction import cache_builder
from yt8m_segments.prediction import predict
from yt8m_segments.postprocess import refine
from yt8m_segments.postprocess import refine_choice
from yt8m_segments.training import run_artifacts
from yt8m_segments.postprocess import submission
from yt8m_segments.data import reader
from yt8m_segments.data import synthetic
from yt8m_segments.data import views


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    data = root / "data"
    synthetic.generate(str(data), num_train_videos=40, num_validate_videos=6,
                       num_test_videos=9, seed=5, num_classes=100,
                       num_active_classes=8, num_segment_classes=4,
                       min_frames=10, max_frames=26, num_files_per_split=3)
    command("train", "--stage=pretrain", *TINY_MODEL,
            f"--train_data_pattern={data}/train-*.tfrecord",
            f"--train_dir={root}/pretrain")
    run = run_artifacts.Run(str(root / "pretrain"))
    class_ids = run.segment_class_ids(str(data / "segment_label_ids.csv"))
    files = views.list_files(f"{data}/test-*.tfrecord")
    assert len(files) == 3
    return {"root": root, "data": data, "run": run, "class_ids": class_ids,
            "files": files}


def _build(world, cache_dir, files=None, video=True):
    return cache_builder.build_cache(
        str(cache_dir), world["run"], world["class_ids"], files or world["files"],
        batch_size=8, video_run=world["run"] if video else None, num_classes=100)


def test_cli_writes_cache_and_submission_that_agree(world):
    root, data = world["root"], world["data"]
    out = root / "cli"
    common = [f"--train_dir={root}/pretrain",
              f"--input_data_pattern={data}/test-*.tfrecord",
              f"--segment_labels_file={data}/segment_label_ids.csv",
              "--segment_max_pred=6", "--num_classes=100"]
    command("inference", *common, f"--cache_dir={out}/cache",
            f"--output_file={out}/refined.csv", f"--video_train_dir={root}/pretrain",
            "--refine=topk", "--refine_topk=3")
    opened = cache.ProbabilityCache.open(str(out / "cache"))
    assert opened.shape[1] == len(world["class_ids"])
    assert opened.video_probs.shape == (9, 100)
    assert opened.meta["train_dir"] == str(root / "pretrain")
    assert opened.meta["input_files"] == world["files"]
    assert len(opened.fingerprint) == 64
    assert sorted(os.listdir(out / "cache" / "parts")) == [
        os.path.basename(f) + ".npz" for f in world["files"]]
    # The CSV is the cache's refined selection.
    submission.write_submission_from_cache(
        str(out / "again.csv"), opened, 6, refine.RefineOptions("topk", topk=3))
    assert (out / "refined.csv").read_text() == (out / "again.csv").read_text()
    # Unrefined: the same as predicting densely and ranking (the old path).
    command("inference", *common, f"--output_file={out}/plain.csv")
    dataset = views.test_segment_dataset(
        f"{data}/test-*.tfrecord", world["run"].feature_spec, 8)
    ids, probs, _ = predict.predict_segments(
        world["run"].model, dataset, world["files"],
        world["run"].columns_for(world["class_ids"]))
    # The flat view interleaves files; the cache keeps file order.
    position = {s: i for i, s in enumerate(ids.tolist())}
    order = [position[s] for s in opened.segment_ids.tolist()]
    np.testing.assert_array_equal(opened.segment_ids, ids[order])
    np.testing.assert_array_equal(opened.segment_probs, probs[order])
    submission.write_submission(str(out / "dense.csv"), ids[order], probs[order],
                                world["class_ids"], 6)
    assert (out / "plain.csv").read_text() == (out / "dense.csv").read_text()
    # A submission from the existing cache, no model run.
    command("inference", f"--from_cache={out}/cache", f"--output_file={out}/fc.csv",
            "--segment_max_pred=6", "--refine=topk", "--refine_topk=3")
    assert (out / "fc.csv").read_text() == (out / "refined.csv").read_text()
    # A shard cannot write a submission.
    result = command("inference", *common, f"--output_file={out}/x.csv",
                     "--num_shards=2", expect_ok=False)
    assert "merge" in result.stderr


def test_refine_auto_chooses_on_the_held_out_cache(world, tmp_path):
    root, data = world["root"], world["data"]
    validate = views.list_files(f"{data}/validate-*.tfrecord")
    held_out = _build(world, tmp_path / "validate", validate)
    _, ground_truth = evaluate.read_record_labels(validate)
    result = command(
        "inference", f"--train_dir={root}/pretrain",
        f"--input_data_pattern={data}/test-*.tfrecord",
        f"--segment_labels_file={data}/segment_label_ids.csv",
        "--segment_max_pred=6", "--num_classes=100",
        f"--video_train_dir={root}/pretrain", f"--cache_dir={tmp_path}/test",
        f"--output_file={tmp_path}/auto.csv", "--refine=auto",
        f"--refine_cache_dir={tmp_path}/validate",
        f"--eval_data_pattern={data}/validate-*.tfrecord")
    assert ": chosen " in result.stderr
    opened = cache.ProbabilityCache.open(str(tmp_path / "test"))
    best = refine_choice.choose_for(opened, 6, held_out, ground_truth)
    submission.write_submission_from_cache(str(tmp_path / "explicit.csv"), opened,
                                           6, best)
    assert (tmp_path / "auto.csv").read_text() == (
        tmp_path / "explicit.csv").read_text()
    # Without a held-out cache --refine=auto stops before any work.
    result = command("inference", f"--train_dir={root}/pretrain",
                     f"--input_data_pattern={data}/test-*.tfrecord",
                     f"--output_file={tmp_path}/x.csv", "--refine=auto",
                     expect_ok=False)
    assert "--refine_cache_dir" in result.stderr


def test_resume_skips_finished_parts(world, tmp_path, monkeypatch):
    first = _build(world, tmp_path / "c")
    os.remove(cache_builder.part_path(str(tmp_path / "c"), world["files"][1]))
    calls = []
    original = predict.Predictor.predict

    def counting(self, dataset, files, *args, **kwargs):
        calls.append((self.id_key, tuple(files)))
        return original(self, dataset, files, *args, **kwargs)

    monkeypatch.setattr(predict.Predictor, "predict", counting)
    again = _build(world, tmp_path / "c")
    assert calls == [("segment_id", (world["files"][1],)),
                     ("id", (world["files"][1],))]
    np.testing.assert_array_equal(again.segment_probs, first.segment_probs)
    np.testing.assert_array_equal(again.segment_ids, first.segment_ids)
    np.testing.assert_array_equal(again.video_probs, first.video_probs)
    calls.clear()
    _build(world, tmp_path / "c")
    assert calls == []
    # Parts of another setting are not silently mixed in.
    with pytest.raises(ValueError, match="video_fingerprint"):
        _build(world, tmp_path / "c", video=False)


def test_shards_merged_equal_a_single_run(world, tmp_path):
    single = _build(world, tmp_path / "single")
    shards = []
    for index in range(2):
        files = cache_builder.shard_files(world["files"], 2, index)
        _build(world, tmp_path / f"shard{index}", files)
        shards.append(str(tmp_path / f"shard{index}"))
    cache.merge_caches(shards, str(tmp_path / "merged"))
    merged = cache.ProbabilityCache.open(str(tmp_path / "merged"))
    order = np.argsort(merged.segment_ids)
    single_order = np.argsort(single.segment_ids)
    np.testing.assert_array_equal(merged.segment_ids[order],
                                  single.segment_ids[single_order])
    np.testing.assert_array_equal(merged.segment_probs[order],
                                  single.segment_probs[single_order])
    vorder, single_vorder = np.argsort(merged.video_ids), np.argsort(single.video_ids)
    np.testing.assert_array_equal(merged.video_probs[vorder],
                                  single.video_probs[single_vorder])
    assert merged.fingerprint == single.fingerprint
    # Same rankings from the merge as from the single run.
    options = refine.RefineOptions("topk,fusion", topk=5)
    for opened, name in ((single, "a.csv"), (merged, "b.csv")):
        submission.write_submission_from_cache(str(tmp_path / name), opened, 5, options)
    assert (submission.read_submission(str(tmp_path / "a.csv"))
            == submission.read_submission(str(tmp_path / "b.csv")))


def test_shard_files_and_progress():
    assert cache_builder.shard_files(list("abcde"), 2, 1) == ["b", "d"]
    with pytest.raises(ValueError, match="shard_index"):
        cache_builder.shard_files(list("ab"), 2, 2)
    with pytest.raises(ValueError, match="no file"):
        cache_builder.shard_files(list("a"), 2, 1)
    now = [0.0]
    progress = cache_builder.Progress(10, 2, every_n_batches=1, clock=lambda: now[0])
    assert progress.eta_seconds() is None
    now[0] = 4.0
    progress.batch(100)
    progress.file_done()
    assert progress.rate() == 25.0
    assert progress.eta_seconds() == pytest.approx(4.0 * 7)
    assert "files 3/10" in progress.line() and "25 segments/s" in progress.line()


def test_a_video_id_twice_in_the_input_is_an_error(world, tmp_path):
    """Twice in one file or in two: every rank and count would take it
    twice, silently (issue 13's fuzzed case)."""
    first, second = world["files"][:2]
    raw = [r.numpy() for r in tf.data.TFRecordDataset(first)]
    video_id = tf.train.SequenceExample.FromString(raw[0]).context.feature[
        "id"].bytes_list.value[0].decode()
    twice = str(tmp_path / "twice.tfrecord")
    with tf.io.TFRecordWriter(twice) as writer:
        for data in raw + raw[:1]:
            writer.write(data)
    with pytest.raises(reader.InputError, match=(
            f"video id {video_id} appears more than once in {twice}$")):
        _build(world, tmp_path / "one_file", [twice])
    copy = str(tmp_path / "copy.tfrecord")
    with tf.io.TFRecordWriter(copy) as writer:
        writer.write(raw[0])
    with pytest.raises(reader.InputError, match=(
            f"video id {video_id} appears in two input files: {first} and "
            f"{copy}$")):
        _build(world, tmp_path / "two_files", [first, second, copy])
