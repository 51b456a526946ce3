"""Serving export: a SavedModel that loads with TensorFlow alone and matches
the in-process predictions (docs/traps.md: no TF Serving binary here)."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from command_runner import run_command
from yt8m_segments.prediction import export
from yt8m_segments.training import run_artifacts
from yt8m_segments.data import synthetic
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec
from yt8m_segments.models.registry import ModelConfig, build_model

SEGMENT_CLASSES = [3, 5, 7, 9, 11, 13]
CONTEXT_FRAMES = 2
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _save(train_dir, config, class_ids, **extra):
    model = build_model(config)
    run_artifacts.save_run(str(train_dir), model, config, class_ids,
                           FeatureSpec(), extra=extra)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    synthetic.generate(str(root / "data"), 2, 2, 6, seed=5, num_classes=100,
                       num_active_classes=8, num_segment_classes=4,
                       min_frames=10, max_frames=33, num_files_per_split=1)
    keras_seed = 7
    tf.keras.utils.set_random_seed(keras_seed)
    # A segment model over 6 classes, "fine-tuned" with context frames, and a
    # video-level model over the 100-class vocabulary (untrained weights are
    # enough to compare two ways of computing the same function; zero biases,
    # not the prior start, so that the outputs spread).
    _save(root / "segment", ModelConfig(
        "NeXtVLAD", "Logistic", len(SEGMENT_CLASSES), 1152,
        {"nextvlad_cluster_size": 4, "nextvlad_groups": 4, "hidden_size": 16,
         "gating_reduction": 4, "initial_probability": None}),
        SEGMENT_CLASSES, stage="finetune", context_frames=CONTEXT_FRAMES)
    _save(root / "video", ModelConfig(
        "DBoF", "MoE", 100, 1152, {"dbof_cluster_size": 16,
                                   "dbof_hidden_size": 8,
                                   "initial_probability": None}),
        list(range(100)), stage="pretrain")
    result = run_command("export", f"--train_dir={root}/segment",
                         f"--video_train_dir={root}/video",
                         f"--export_dir={root}/export")
    assert result.stdout.strip().splitlines()[-1] == f"{root}/export/1"
    return root


def _fresh_process_predictions(root):
    """Run both signatures in a process that imports only TensorFlow."""
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        model = tf.saved_model.load({str(root / 'export' / '1')!r})
        records = list(tf.data.TFRecordDataset(
            {str(root / 'data' / 'test-00000-of-00001.tfrecord')!r}))
        out = model.signatures["serving_default"](examples=tf.stack(records))
        frames = np.load({str(root / 'frames.npz')!r})
        dense = model.signatures["predict_frames"](
            frames=tf.constant(frames["frames"]), mask=tf.constant(frames["mask"]))
        loaded = [name for name in sys.modules if name.startswith("yt8m")]
        assert not loaded, loaded
        np.savez({str(root / 'served.npz')!r},
                 dense_probabilities=dense["probabilities"].numpy(),
                 **{{key: value.numpy().astype(str) if value.dtype == tf.string
                    else value.numpy() for key, value in out.items()}})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                            text=True, env=ENV, check=False, cwd=str(root))
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(root / "served.npz"))


def test_fresh_tensorflow_process_matches_in_process_predictions(exported):
    root = exported
    segment = run_artifacts.Run(str(root / "segment"))
    video = run_artifacts.Run(str(root / "video"))
    pattern = str(root / "data" / "test-*.tfrecord")

    ids, probabilities, frames, masks = [], [], [], []
    for batch in views.test_segment_dataset(pattern, segment.feature_spec, 8,
                                            context_frames=CONTEXT_FRAMES):
        ids.extend(batch["segment_id"].numpy().astype(str))
        probabilities.append(segment.model(
            {"frames": batch["frames"], "mask": batch["mask"]},
            training=False).numpy())
        frames.append(batch["frames"].numpy())
        masks.append(batch["mask"].numpy())
    expected = np.concatenate(probabilities)
    np.savez(root / "frames.npz", frames=np.concatenate(frames),
             mask=np.concatenate(masks))
    video_ids, video_probs = [], []
    for batch in views.video_dataset(pattern, video.feature_spec, 100, 300, 4):
        video_ids.extend(batch["id"].numpy().astype(str))
        video_probs.append(video.model(
            {"frames": batch["frames"], "mask": batch["mask"]},
            training=False).numpy())

    served = _fresh_process_predictions(root)
    assert served["segment_id"].astype(str).tolist() == ids
    assert served["class_ids"].tolist() == SEGMENT_CLASSES
    assert expected.std() > 1e-3  # the comparison is not between constants
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(served["dense_probabilities"], expected, atol=1e-5)
    # Index and start agree with the ids; starts are every 5th frame from 0.
    served_videos = served["video_id"].astype(str)
    assert served_videos.tolist() == video_ids
    rebuilt = [f"{served_videos[i]}:{s}" for i, s in zip(
        served["segment_video_index"], served["segment_start"])]
    assert rebuilt == ids
    for index in range(len(served_videos)):
        starts = served["segment_start"][served["segment_video_index"] == index]
        assert starts.tolist() == list(range(0, 5 * len(starts), 5))
    assert served["video_class_ids"].tolist() == list(range(100))
    np.testing.assert_allclose(served["video_probabilities"],
                               np.concatenate(video_probs), atol=1e-5)


def _saved_model_cli():
    found = shutil.which("saved_model_cli")
    if found:
        return [found]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def test_saved_model_cli_lists_both_signatures(exported):
    result = subprocess.run(
        [*_saved_model_cli(), "show", "--dir", str(exported / "export" / "1"),
         "--all"], capture_output=True, text=True, env=ENV, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert "signature_def['serving_default']" in text
    assert "signature_def['predict_frames']" in text
    for name in ("examples", "frames", "mask"):
        assert f"inputs['{name}']" in text
    for name in ("probabilities", "segment_video_index", "segment_start",
                 "class_ids", "video_probabilities"):
        assert f"outputs['{name}']" in text


def test_versions_count_up_and_are_never_overwritten(exported):
    root = exported
    assert export.next_version(str(root / "export")) == 2
    assert export.next_version(str(root / "nothing_here")) == 1
    with pytest.raises(FileExistsError, match="export_version"):
        export.export(str(root / "segment"), str(root / "export"), version=1)
    # What an export SIGKILLed before its rename leaves (found by
    # bench/kill_points.py: no later export removed it).
    os.makedirs(root / "export" / ".tmp-5-0badc0de" / "variables")
    path = export.export(str(root / "segment"), str(root / "export"),
                         version=7)
    assert path == str(root / "export" / "7")
    assert export.next_version(str(root / "export")) == 8
    # No temporary directory is left behind for TF Serving to trip over.
    assert sorted(os.listdir(root / "export")) == ["1", "7"]


def test_video_level_run_is_served_each_video_mean_frame(exported):
    """A run trained on video-level records (frame_features false) is fed the
    mean frame in the graph, as inference feeds it."""
    from yt8m_segments.prediction import predict
    root = exported
    _save(root / "video_means", ModelConfig(
        "ResNetLike", "Logistic", 100, 1152,
        {"resnet_branch_size": 8, "resnet_hidden_size": 8,
         "initial_probability": None}),
        list(range(100)), stage="pretrain", frame_features=False)
    module = export.build_module(str(root / "segment"),
                                 str(root / "video_means"))
    path = str(root / "data" / "test-00000-of-00001.tfrecord")
    served = module.serve(tf.stack(list(tf.data.TFRecordDataset(path))))
    video = run_artifacts.Run(str(root / "video_means"))
    ids, expected, _ = predict.Predictor(
        video.model, id_key="id", mean_frame=True).predict(
            views.video_dataset(path, video.feature_spec, 100, 300, 4,
                                quantized=True), [path])
    assert served["video_id"].numpy().astype(str).tolist() == ids.tolist()
    assert np.asarray(expected, np.float32).std() > 1e-3
    np.testing.assert_allclose(served["video_probabilities"].numpy(),
                               expected.astype(np.float32), atol=2e-3)
