"""models/windowed.py: per-frame work once per video equals the flat windows."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m_segments.prediction import cache_builder
from yt8m_segments.prediction import predict
from yt8m_segments.training import run_artifacts
from yt8m_segments.data import synthetic
from yt8m_segments.data import views
from yt8m_segments.data.features import FeatureSpec
from yt8m_segments.models import registry
from yt8m_segments.models import windowed

FEATURE_SIZES = [24, 8]
NUM_CLASSES = 7
LENGTHS = np.array([23, 6, 12, 1])   # padding in T, a partial last window

MODELS = {
    "DBoF": ("MoE", {"dbof_cluster_size": 16, "dbof_hidden_size": 8,
                     "dbof_pooling": "max"}),
    "SoftDBoF": ("MoE", {"dbof_cluster_size": 16, "dbof_hidden_size": 8,
                         "dbof_pooling": "both"}),
    "GatedDBoF": ("MoE", {"dbof_cluster_size": 16, "dbof_hidden_size": 8,
                          "gate_bottleneck": 6}),
    "NetVLAD": ("MoE", {"netvlad_cluster_size": 4, "hidden_size": 8}),
    "LightNetVLAD": ("MoE", {"netvlad_cluster_size": 4, "hidden_size": 8}),
    "NonLocalNetVLAD": ("MoE", {"netvlad_cluster_size": 4, "hidden_size": 8}),
    "NeXtVLAD": ("Logistic", {"nextvlad_cluster_size": 4,
                              "nextvlad_groups": 4, "hidden_size": 8}),
    "NetFV": ("MoE", {"netfv_cluster_size": 4, "hidden_size": 8}),
    "AveragePooling": ("Logistic", {}),
    "ResNetLikeConcat": ("Logistic", {"resnet_branch_size": 8,
                                      "resnet_hidden_size": 8}),
    "MixNeXtVLAD": ("Logistic", {"nextvlad_cluster_size": 4,
                                 "nextvlad_groups": 4, "hidden_size": 8,
                                 "mixture_size": 2}),
    "Mixture": ("Logistic", {"mixture_models": "NetVLAD+SoftDBoF",
                             "netvlad_cluster_size": 4, "hidden_size": 8,
                             "dbof_cluster_size": 16,
                             "dbof_hidden_size": 8}),
}


def _randomize_batch_norms(model, seed=0):
    """Moving statistics far from (0, 1), so BN is a real per-frame affine."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.5, shape))
            layer.moving_variance.assign(rng.uniform(0.2, 2.0, shape))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, shape))
                layer.beta.assign(rng.normal(0, 0.3, shape))


def _build(name, seed=0):
    classifier, hparams = MODELS[name]
    config = registry.ModelConfig(
        name, classifier, NUM_CLASSES, sum(FEATURE_SIZES),
        {"feature_sizes": FEATURE_SIZES, **hparams})
    keras.utils.set_random_seed(seed)
    model = registry.build_model(config)
    _randomize_batch_norms(model, seed)
    return model


def _per_video_batch(context_frames, seed=0):
    """A per-video batch and the same windows as flat examples."""
    rng = np.random.default_rng(seed)
    batch, time = len(LENGTHS), LENGTHS.max()
    mask = np.arange(time)[None] < LENGTHS[:, None]
    frames = (rng.normal(size=(batch, time, sum(FEATURE_SIZES)))
              * mask[..., None]).astype(np.float32)
    num_windows = (LENGTHS + 4) // 5
    rows = np.repeat(np.arange(batch), num_windows)
    starts = np.concatenate([np.arange(n) * 5 for n in num_windows])
    index, window_mask = (t.numpy() for t in views.window_indices(
        tf.constant(LENGTHS, tf.int32), tf.constant(rows, tf.int32),
        tf.constant(starts, tf.int32), context_frames))
    flat_frames = frames[rows[:, None], index] * window_mask[..., None]
    segments, width = num_windows.max(), index.shape[1]
    per_video = {"frames": frames, "mask": mask,
                 "window_index": np.zeros((batch, segments, width), np.int32),
                 "window_mask": np.zeros((batch, segments, width), bool),
                 "segment_mask": np.zeros((batch, segments), bool)}
    slot = np.concatenate([np.arange(n) for n in num_windows])
    per_video["window_index"][rows, slot] = index
    per_video["window_mask"][rows, slot] = window_mask
    per_video["segment_mask"][rows, slot] = True
    return per_video, {"frames": flat_frames, "mask": window_mask}


@pytest.mark.parametrize("context_frames", [0, 5])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_windowed_equals_flat_windows(name, context_frames):
    model = _build(name)
    assert windowed.supports_windowed(model)
    per_video, flat = _per_video_batch(context_frames)
    expected = model(flat, training=False).numpy()
    runner = windowed.windowed_model(model)
    grid = runner(per_video["frames"], per_video["mask"],
                  per_video["window_index"], per_video["window_mask"]).numpy()
    assert grid.shape == per_video["segment_mask"].shape + (NUM_CLASSES,)
    np.testing.assert_allclose(grid[per_video["segment_mask"]], expected,
                               atol=1e-5, rtol=0)
    compact = runner.segments(per_video["frames"], per_video["mask"],
                              per_video["window_index"],
                              per_video["window_mask"],
                              per_video["segment_mask"]).numpy()
    np.testing.assert_allclose(compact, expected, atol=1e-5, rtol=0)


def test_loaded_model_and_split_layers(tmp_path):
    model = _build("NeXtVLAD")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    per_video, flat = _per_video_batch(3)
    expected = model(flat, training=False).numpy()
    got = windowed.windowed_model(loaded).segments(
        per_video["frames"], per_video["mask"], per_video["window_index"],
        per_video["window_mask"], per_video["segment_mask"]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # call() is pool_frames(frame_features(...)).
    layer = loaded.get_layer("aggregator_0")
    x = flat["frames"][..., :FEATURE_SIZES[0]]
    np.testing.assert_allclose(
        layer(x, mask=flat["mask"]).numpy(),
        layer.pool_frames(layer.frame_features(x, flat["mask"]),
                          flat["mask"]).numpy(), atol=1e-6)


def test_recurrent_models_fall_back():
    config = registry.ModelConfig(
        "GRU", "MoE", NUM_CLASSES, sum(FEATURE_SIZES),
        {"feature_sizes": FEATURE_SIZES, "rnn_units": 4, "rnn_layers": 1})
    model = registry.build_model(config)
    assert not windowed.supports_windowed(model)
    assert "RecurrentAggregator" in windowed.why_not_windowed(model)
    with pytest.raises(windowed.NotWindowable):
        windowed.windowed_model(model)
    assert not cache_builder.use_windowed(model, context_frames=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("windowed")
    data = root / "data"
    synthetic.generate(str(data), num_train_videos=2, num_validate_videos=2,
                       num_test_videos=7, seed=3, num_classes=100,
                       num_active_classes=8, num_segment_classes=4,
                       min_frames=10, max_frames=37, num_files_per_split=2)
    spec = FeatureSpec()
    class_ids = list(range(100))
    config = registry.ModelConfig(
        "NetVLAD", "MoE", 100, sum(spec.sizes),
        {"netvlad_cluster_size": 4, "hidden_size": 8})
    keras.utils.set_random_seed(1)
    model = registry.build_model(config)
    _randomize_batch_norms(model, 1)
    run_artifacts.save_run(str(root / "run"), model, config, class_ids, spec,
                           {"stage": "finetune", "context_frames": 2})
    return {"root": root, "run": run_artifacts.Run(str(root / "run")),
            "files": views.list_files(f"{data}/test-*.tfrecord")}


def test_inference_cache_equals_flat_path(world, monkeypatch, caplog):
    run, files = world["run"], world["files"]
    class_ids = run.segment_class_ids()
    used = []
    monkeypatch.setattr(predict, "WindowedPredictor", _spy(
        predict.WindowedPredictor, used))

    def build(name, **kwargs):
        return cache_builder.build_cache(
            str(world["root"] / name), run, class_ids, files, batch_size=8,
            context_frames=run.context_frames(), **kwargs)

    monkeypatch.setattr(cache_builder, "_WINDOWED", False)
    flat = build("flat")
    assert not used
    monkeypatch.setattr(cache_builder, "_WINDOWED", None)
    with caplog.at_level(logging.INFO):
        per_video = build("per_video")
    assert used, "the per-video path did not run"
    np.testing.assert_array_equal(per_video.segment_ids, flat.segment_ids)
    assert len(flat.segment_ids) > 20
    np.testing.assert_allclose(
        per_video.segment_probs.astype(np.float32),
        flat.segment_probs.astype(np.float32), atol=1e-3, rtol=2e-3)
    assert per_video.meta["context_frames"] == flat.meta["context_frames"] == 2


def _spy(cls, used):
    class Spy(cls):
        def __init__(self, *args, **kwargs):
            used.append(True)
            super().__init__(*args, **kwargs)
    return Spy
