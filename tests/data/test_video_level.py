"""2018 video-level records (mean_rgb, mean_audio): view, errors, training."""

import json
import os
import re

import numpy as np
import pytest

from command_runner import run_command
from conftest import frames_with_values
from yt8m_segments.data import synthetic
from yt8m_segments.data import reader
from yt8m_segments.data import records
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec

SPEC = FeatureSpec(("mean_rgb", "mean_audio"), (1024, 128))


def means(seed):
    rng = np.random.default_rng(seed)
    return {"mean_rgb": rng.uniform(-2, 2, 1024).astype(np.float32),
            "mean_audio": rng.uniform(-2, 2, 128).astype(np.float32)}


@pytest.fixture
def write_video_level(tmp_path):
    def write(videos, name="video-00000.tfrecord"):
        path = str(tmp_path / name)
        records.write_records(path, [
            records.make_video_level_example(**video) for video in videos])
        return path
    return write


def read_all(pattern, num_classes=10, batch_size=8):
    files = reader.list_files(pattern)
    dataset = views.video_level_dataset(None, SPEC, num_classes, batch_size,
                                        files=files)
    return list(reader.iterate(dataset, files))


def test_each_video_is_one_frame_of_its_feature_means(write_video_level):
    videos = [dict(video_id=f"v{i}", labels=labels, features=means(i))
              for i, labels in enumerate([[1, 3], [], [9]])]
    batch, = read_all(write_video_level(videos))
    assert batch["frames"].shape == (3, 1, 1152)
    assert batch["mask"].numpy().all() and batch["mask"].shape == (3, 1)
    for b, video in enumerate(videos):
        assert batch["id"].numpy()[b].decode() == video["video_id"]
        expected = np.concatenate([video["features"]["mean_rgb"],
                                   video["features"]["mean_audio"]])
        np.testing.assert_array_equal(batch["frames"].numpy()[b, 0], expected)
        assert np.flatnonzero(batch["labels"].numpy()[b]).tolist() == \
            video["labels"]


@pytest.mark.parametrize("features,labels,message", [
    ({"mean_rgb": np.zeros(1024)}, [1],
     "feature 'mean_audio' is missing or not 128 floats"),
    ({"mean_rgb": np.zeros(1000), "mean_audio": np.zeros(128)}, [1],
     "feature 'mean_rgb' is missing or not 1024 floats"),
    (means(0), [10], "label id outside the 10-class vocabulary"),
    ({**means(0), "mean_rgb": np.full(1024, np.nan)}, [1],
     "feature 'mean_rgb' holds NaN or infinity"),
    ({**means(0), "mean_audio": np.r_[np.zeros(127), np.inf]}, [1],
     "feature 'mean_audio' holds NaN or infinity"),
])
def test_bad_video_level_record_names_file_record_and_video(
        write_video_level, features, labels, message):
    path = write_video_level([dict(video_id="fine", labels=[1],
                                   features=means(1)),
                              dict(video_id="bad1", labels=labels,
                                   features=features)])
    with pytest.raises(reader.InputError,
                       match=rf"{message}.*file: {path} record: 1 video id: bad1"):
        read_all(path)


def test_frame_level_record_read_as_video_level_says_so(write_videos):
    path = write_videos([dict(video_id="frm0", labels=[1],
                              features=frames_with_values(5))])
    with pytest.raises(reader.InputError, match="feature 'mean_rgb' is missing"
                       r".*tf.train.Example.*record: 0 video id: frm0"):
        read_all(path)


def test_video_level_record_read_as_frames_says_so(write_video_level):
    path = write_video_level([dict(video_id="vl00", labels=[1],
                                   features=means(0))])
    dataset = views.video_dataset(path, FeatureSpec(), 10, 300, 8)
    with pytest.raises(reader.InputError,
                       match=r"no frames .*--frame_features=false.*record: 0 "
                             r"video id: vl00"):
        list(reader.iterate(dataset, [path]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_level_data")
    summary = synthetic.generate(str(root), 24, 8, 4, seed=3, video_level=True,
                                 num_classes=100, num_active_classes=8,
                                 num_segment_classes=4, min_frames=10,
                                 max_frames=20)
    return root, summary


def test_synthetic_video_level_records_are_the_frame_means(data):
    root, summary = data
    assert len(summary["train"]["video_level_files"]) == 2
    frame_files = reader.list_files(str(root / "train-*.tfrecord"))
    frame_level = next(iter(views.video_dataset(
        None, FeatureSpec(), 100, 300, 64, files=frame_files)))
    video_level, = read_all(str(root / "train_video-*.tfrecord"), 100, 64)
    by_id = {i: b for b, i in enumerate(video_level["id"].numpy())}
    assert sorted(by_id) == sorted(frame_level["id"].numpy())
    for b, video_id in enumerate(frame_level["id"].numpy()):
        mask = frame_level["mask"].numpy()[b]
        np.testing.assert_allclose(
            video_level["frames"].numpy()[by_id[video_id], 0],
            frame_level["frames"].numpy()[b][mask].mean(axis=0), atol=1e-5)
        np.testing.assert_array_equal(
            video_level["labels"].numpy()[by_id[video_id]],
            frame_level["labels"].numpy()[b])


def pretrain_video_level(root, train_dir, *extra_flags):
    """train.py on the video-level records, a tiny ResNetLike; its log."""
    return run_command(
        "train", "--stage=pretrain",
        "--frame_features=false", "--feature_names=mean_rgb,mean_audio",
        f"--train_data_pattern={root}/train_video-*.tfrecord",
        f"--train_dir={train_dir}", "--model=ResNetLike",
        "--video_level_classifier_model=Logistic",
        # zero biases, not the prior start: the outputs the tests compare
        # then spread after a few steps
        "--model_hparams=resnet_branch_size=8,resnet_hidden_size=8,"
        "initial_probability=null",
        "--num_classes=100", *extra_flags).stderr


@pytest.mark.parametrize("cached", [False, True])
def test_pretrain_on_video_level_records_then_read_frames(data, tmp_path,
                                                          cached):
    """A ResNetLike trained on mean_rgb/mean_audio runs on frame records."""
    root, summary = data
    train_dir = str(tmp_path / "video")
    cache_flags = [f"--video_cache_dir={tmp_path / 'cache'}"] if cached else []
    pretrain_video_level(root, train_dir, "--batch_size=8", "--num_epochs=8",
                         "--learning_rate=0.02", *cache_flags)
    assert os.path.exists(tmp_path / "cache" / "manifest.json") == cached
    with open(os.path.join(train_dir, "run_config.json")) as handle:
        config = json.load(handle)
    # Stored as the frame features the means come from, so refinement and
    # export read frame records with it.
    assert config["feature_names"] == ["rgb", "audio"]
    assert config["frame_features"] is False

    from yt8m_segments.postprocess import cache as cache_lib
    from yt8m_segments.prediction import cache_builder
    from yt8m_segments.prediction import predict
    from yt8m_segments.training import run_artifacts
    run = run_artifacts.Run(train_dir)
    assert run.reads_mean_frame
    if cached:
        return  # the same run as without the cache, to what follows

    # As a segment model (inference straight from the pretrained run): each
    # test window is fed as its mean frame.
    labels_file = tmp_path / "segment_labels.csv"
    segment_classes = summary["segment_class_ids"]
    labels_file.write_text("Index\n" + "".join(f"{c}\n" for c in
                                                 segment_classes))
    cache_builder.infer(train_dir, str(root / "test-*.tfrecord"), None, 10, 16,
                        segment_labels_file=str(labels_file),
                        cache_dir=str(tmp_path / "probs"))
    probs = cache_lib.ProbabilityCache.open(str(tmp_path / "probs"))
    windows = next(iter(views.test_segment_dataset(
        str(root / "test-*.tfrecord"), FeatureSpec(), 1000)))
    mask = windows["mask"].numpy()
    means = (windows["frames"].numpy() * mask[..., None]).sum(1) / mask.sum(
        1, keepdims=True)
    expected = run.model.predict({"frames": means[:, None],
                                  "mask": np.ones((len(means), 1), bool)},
                                 verbose=0)[:, segment_classes]
    assert expected.std() > 0.01  # not a comparison of near-constants
    row_of = {s: i for i, s in enumerate(probs.segment_ids.tolist())}
    rows = [row_of[s] for s in windows["segment_id"].numpy().astype(str)]
    assert sorted(rows) == list(range(len(row_of)))
    np.testing.assert_allclose(probs.segment_probs[rows].astype(np.float32),
                               expected, rtol=2e-3, atol=2e-4)
    video_level, = read_all(str(root / "train_video-*.tfrecord"), 100, 64)
    expected = dict(zip(video_level["id"].numpy().astype(str), run.model.predict(
        {"frames": video_level["frames"], "mask": video_level["mask"]},
        verbose=0)))
    # On frame records (as refinement and export read them) the run sees
    # each video's mean frame: what it was trained on.
    frame_files = reader.list_files(str(root / "train-*.tfrecord"))
    ids, probabilities, _ = predict.Predictor(
        run.model, id_key="id", mean_frame=True).predict(
            views.video_dataset(None, FeatureSpec(), 100, 300, 16,
                                files=frame_files, quantized=True),
            frame_files)
    assert sorted(ids) == sorted(expected)
    for video_id, row in zip(ids, probabilities):
        np.testing.assert_allclose(row, expected[video_id], rtol=2e-3,
                                   atol=1e-4)


def test_mean_frame_is_the_mean_of_the_real_frames():
    from yt8m_segments.data import parsing
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(3, 6, 4)).astype(np.float32)
    mask = np.arange(6)[None, :] < np.array([6, 1, 3])[:, None]
    got = parsing.mean_frame({"frames": frames, "mask": mask})
    assert got["frames"].shape == (3, 1, 4) and got["mask"].numpy().all()
    for b, length in enumerate([6, 1, 3]):
        np.testing.assert_allclose(got["frames"].numpy()[b, 0],
                                   frames[b, :length].mean(axis=0), rtol=1e-6)


def test_video_level_records_are_for_pretraining_only(data, tmp_path):
    root, _ = data
    result = run_command(
        "train", "--stage=finetune", "--frame_features=false",
        f"--pretrain_dir={tmp_path}",
        f"--train_data_pattern={root}/train_video-*.tfrecord",
        f"--train_dir={tmp_path / 'f'}", expect_ok=False)
    assert result.returncode == 2
    assert "--frame_features=false is for --stage=pretrain" in result.stderr


def test_video_cache_of_video_level_records_yields_the_view(data, tmp_path):
    from yt8m_segments.data import video_cache
    root, _ = data
    files = reader.list_files(str(root / "train_video-*.tfrecord"))
    cache_dir = str(tmp_path / "cache")
    manifest = video_cache.build(cache_dir, files, SPEC, vocabulary_size=100,
                                 video_level=True)
    assert manifest["num_frames"] == manifest["num_videos"] == 24
    # The cache holds the files one after the other.
    per_file = [next(views.video_level_dataset(
        None, SPEC, 100, 24, files=[path]).as_numpy_iterator())
        for path in files]
    got, = list(video_cache.dataset(cache_dir, 24).as_numpy_iterator())
    assert got.keys() == per_file[0].keys()
    for key in got:
        expected = np.concatenate([batch[key] for batch in per_file])
        assert got[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(got[key], expected, err_msg=key)
    assert not video_cache.is_current(cache_dir, files, SPEC,
                                      vocabulary_size=100)


@pytest.fixture(scope="module")
def untrained_video_level_run(tmp_path_factory):
    """A ResNetLike run over the 100-class vocabulary, marked as trained on
    video-level records (weights as initialised: enough to compare paths)."""
    import keras
    from yt8m_segments.training import run_artifacts
    from yt8m_segments.models.registry import ModelConfig, build_model
    keras.utils.set_random_seed(3)
    config = ModelConfig("ResNetLike", "Logistic", 100, 1152,
                         {"resnet_branch_size": 16, "resnet_hidden_size": 16})
    train_dir = str(tmp_path_factory.mktemp("gap_run"))
    run_artifacts.save_run(train_dir, build_model(config), config,
                           list(range(100)), FeatureSpec(),
                           extra={"stage": "pretrain", "frame_features": False})
    return train_dir


def test_gap_of_a_model_on_frame_and_video_level_records(
        data, untrained_video_level_run):
    from yt8m_segments.evaluation import evaluate
    from yt8m_segments.evaluation import metrics
    from yt8m_segments.training import run_artifacts
    from yt8m_segments.data import parsing
    root, _ = data
    frame_files = reader.list_files(str(root / "train-*.tfrecord"))
    video_files = reader.list_files(str(root / "train_video-*.tfrecord"))
    run = run_artifacts.Run(untrained_video_level_run)
    # Reference: the whole arrays, the model on each video's mean frame,
    # rounded to float16 as predictions are.
    predictions, labels = [], []
    for batch in views.video_dataset(None, FeatureSpec(), 100, 300, 7,
                                     files=frame_files):
        inputs = parsing.mean_frame(parsing.model_inputs(batch))
        predictions.append(run.model(inputs, training=False).numpy().astype(
            np.float16))
        labels.append(batch["labels"].numpy())
    predictions, labels = np.concatenate(predictions), np.concatenate(labels)
    expected = metrics.gap_at_k(predictions, labels, 20)
    assert 0 < expected < 1
    on_frames = evaluate.evaluate_model_gap(untrained_video_level_run,
                                            frame_files, 20, batch_size=5,
                                            num_classes=100)
    assert on_frames == pytest.approx(expected, abs=1e-9)
    # The video-level records hold those means: the same videos, ~same GAP.
    on_means = evaluate.evaluate_model_gap(untrained_video_level_run,
                                           video_files, 20, batch_size=5,
                                           num_classes=100,
                                           frame_features=False)
    assert on_means == pytest.approx(expected, abs=2e-3)


def test_eval_command_prints_gap_last(data, untrained_video_level_run):
    root, _ = data
    result = run_command(
        "eval", "--eval_metric=gap",
        f"--train_dir={untrained_video_level_run}", "--num_classes=100",
        f"--eval_data_pattern={root}/train_video-*.tfrecord",
        "--frame_features=false")
    name, value = result.stdout.strip().splitlines()[-1].split()
    assert name == "GAP@20" and 0 < float(value) < 1


def test_pretraining_validates_by_gap_on_a_held_out_fold(data, tmp_path):
    root, _ = data
    train_dir = tmp_path / "run"
    log = pretrain_video_level(root, train_dir, "--batch_size=4",
                               "--num_epochs=2", "--num_folds=2",
                               "--eval_metric=gap", "--eval_every_steps=2")
    scores = [float(value) for value in re.findall(
        r"validation GAP ([0-9.]+)", log)]
    assert len(scores) >= 2 and all(0 < s <= 1 for s in scores)
    assert (train_dir / "best" / "model.keras").exists()
    # The score is the eval command's on the held-out file (fold 0: file 0).
    from yt8m_segments.evaluation import evaluate
    best = evaluate.evaluate_model_gap(
        str(train_dir / "best"),
        reader.list_files(str(root / "train_video-*.tfrecord"))[:1],
        batch_size=4, num_classes=100, frame_features=False)
    assert best == pytest.approx(max(scores), abs=1e-4)
