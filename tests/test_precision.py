"""Mixed precision and XLA (yt8m_segments/precision.py, --mixed_precision,
--jit_compile): predictions within a stated tolerance of float32, float32
probabilities, runs saved in float32, and training that still learns."""

import numpy as np
import pytest
import tensorflow as tf
from absl import app

from yt8m_segments import precision
from yt8m_segments.data import reader
from yt8m_segments.data import synthetic
from yt8m_segments.evaluation import baselines
from yt8m_segments.evaluation import evaluate
from yt8m_segments.evaluation import metrics
from yt8m_segments.data.features import FeatureSpec
from yt8m_segments.models import registry
from yt8m_segments.prediction import cache_builder
from yt8m_segments.prediction import predict
from yt8m_segments.postprocess import cache
from yt8m_segments.training import run_artifacts
from yt8m_segments.training import task

FEATURES = 24
# Max |p_bf16 - p_float32| over a batch of these models, measured:
# 3e-3 to 8e-3 (bfloat16 keeps 8 bits of mantissa: products are off by
# ~0.4% each, probabilities sit near the 1e-3 prior).
PROBABILITY_TOLERANCE = 2e-2
MODELS = [("DBoF", "MoE", {"dbof_cluster_size": 32, "dbof_hidden_size": 16}),
          ("NeXtVLAD", "Logistic", {"nextvlad_cluster_size": 8,
                                    "nextvlad_groups": 4, "hidden_size": 16}),
          ("MixNeXtVLAD", "Logistic", {"nextvlad_cluster_size": 8,
                                       "nextvlad_groups": 4, "hidden_size": 16,
                                       "mixture_size": 2}),
          ("LSTM", "Logistic", {"rnn_units": 16, "rnn_layers": 1})]


def frames_and_mask(batch=6, time=10, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.normal(size=(batch, time, FEATURES)).astype("float32")
    mask = np.arange(time)[None] < rng.integers(1, time + 1, batch)[:, None]
    return {"frames": tf.constant(frames), "mask": tf.constant(mask)}


@pytest.mark.parametrize("name,classifier,hparams", MODELS,
                         ids=[m[0] for m in MODELS])
def test_bfloat16_predictions_stay_near_float32(name, classifier, hparams):
    """The same weights under mixed_bfloat16: float32 probabilities within
    PROBABILITY_TOLERANCE (and not bit-equal: the products did run in 16
    bits); rebuilt back in float32 they are the original's exactly."""
    config = registry.ModelConfig(name, classifier, 50, FEATURES,
                                  {**hparams, "feature_sizes": [16, 8]})
    model = registry.build_model(config)
    mixed = precision.rebuild(model, config, "mixed_bfloat16")
    assert precision.policy_of(model) == "float32"
    assert precision.policy_of(mixed) == "mixed_bfloat16"
    inputs = frames_and_mask()
    expected = model(inputs, training=False).numpy()
    got = mixed(inputs, training=False)
    assert got.dtype == tf.float32
    difference = np.abs(got.numpy() - expected).max()
    assert 0 < difference < PROBABILITY_TOLERANCE, difference
    back = precision.rebuild(mixed, config, "float32")
    np.testing.assert_array_equal(back(inputs, training=False).numpy(),
                                  expected)


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'float8'"):
        with precision.policy_scope("float8"):
            pass


def test_xla_predictor_matches_the_plain_one():
    """Predictor with jit_compile gives the plain forward pass's
    probabilities, padding included."""
    config = registry.ModelConfig("DBoF", "MoE", 20, FEATURES, {
        "dbof_cluster_size": 16, "dbof_hidden_size": 8,
        "feature_sizes": [16, 8]})
    model = registry.build_model(config)
    inputs = frames_and_mask()
    plain = predict.Predictor(model)._forward(inputs["frames"], inputs["mask"])
    compiled = predict.Predictor(model, jit_compile=True)._forward(
        inputs["frames"], inputs["mask"])
    np.testing.assert_allclose(compiled.numpy(), plain.numpy(), rtol=1e-4,
                               atol=1e-6)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small generated world, its baselines and the float32 pretraining."""
    root = tmp_path_factory.mktemp("precision")
    data = root / "data"
    synthetic.generate(str(data), seed=3, num_classes=60,
                       num_train_videos=320, num_validate_videos=160,
                       num_test_videos=20, num_active_classes=8,
                       num_segment_classes=4, min_frames=20, max_frames=40,
                       num_files_per_split=2)
    files = {split: reader.list_files(str(data / f"{split}-*.tfrecord"))
             for split in ("train", "validate")}
    _, train_x, train_y = baselines.video_mean_frames(files["train"],
                                                      FeatureSpec())
    _, eval_x, eval_y = baselines.video_mean_frames(files["validate"],
                                                    FeatureSpec())
    prior = train_y.mean(axis=0).astype(np.float32)
    world = dict(root=root, data=data, files=files, gap={
        "prior": metrics.gap_at_k(np.broadcast_to(prior, eval_y.shape),
                                  eval_y, 20),
        "ridge": metrics.gap_at_k(baselines.Ridge().fit(train_x, train_y)
                                  .predict(eval_x), eval_y, 20)})
    world["gap"]["float32"] = pretrain(world, "float32")
    return world


def pretrain(world, policy, jit_compile=False, steps=200):
    """GAP@20 on the validate videos of a short pretraining run."""
    train_dir = str(world["root"] / f"pretrain_{policy}_{jit_compile}")
    task.run(task.TrainConfig(
        train_data_pattern=str(world["data"] / "train-*.tfrecord"),
        train_dir=train_dir, num_classes=60, batch_size=32, max_steps=steps,
        model_hparams={"dbof_cluster_size": 64, "dbof_hidden_size": 32},
        mixed_precision=policy, jit_compile=jit_compile, ema_momentum=0.0,
        log_every_steps=1000))
    world.setdefault("dirs", {})[(policy, jit_compile)] = train_dir
    return evaluate.evaluate_model_gap(train_dir, world["files"]["validate"],
                                       num_classes=60)


@pytest.mark.parametrize("policy,jit_compile", [
    ("mixed_bfloat16", False), ("float32", True),
    pytest.param("mixed_float16", False, marks=pytest.mark.heavy)])
def test_training_still_learns(world, policy, jit_compile):
    """The same 200 steps under another precision or compiled by XLA learn
    what float32 learns: GAP@20 more than half the way from the label
    prior to the ridge on mean frames, and within 0.05 of float32's (four
    seeds of float32 alone spread over 0.045: 0.574-0.619; XLA draws other
    dropout masks, so its run is another draw); the saved run is float32
    whatever trained it."""
    gap = pretrain(world, policy, jit_compile)
    reference, prior = world["gap"]["float32"], world["gap"]["prior"]
    halfway = prior + 0.5 * (world["gap"]["ridge"] - prior)
    assert reference > halfway, world["gap"]
    assert gap > max(reference - 0.05, halfway), (gap, world["gap"])
    run = run_artifacts.Run(world["dirs"][(policy, jit_compile)])
    assert precision.policy_of(run.model) == "float32"
    assert precision.policy_of(run.model_in(policy)) == policy


def test_xla_train_steps_compute_the_plain_steps(world):
    """Without dropout (XLA draws other random masks), 5 steps compiled by
    XLA end where the plain steps end, up to float rounding: 5e-4 measured
    at Adam's 1e-2 steps, where rounding can flip a near-zero gradient."""
    weights = []
    for jit_compile in (False, True):
        train_dir = str(world["root"] / f"five_steps_{jit_compile}")
        task.run(task.TrainConfig(
            train_data_pattern=str(world["data"] / "train-*.tfrecord"),
            train_dir=train_dir, num_classes=60, batch_size=32, max_steps=5,
            model_hparams={"dbof_cluster_size": 64, "dbof_hidden_size": 32,
                           "dropout": 0.0},
            jit_compile=jit_compile, ema_momentum=0.0, shuffle=False))
        weights.append(run_artifacts.Run(train_dir).model.get_weights())
    difference = max(np.abs(a - b).max() for a, b in zip(*weights))
    assert difference < 2e-3, difference


def test_usage_error_names_the_policies():
    config = task.TrainConfig(train_data_pattern="x", train_dir="y",
                              mixed_precision="half")
    with pytest.raises(app.UsageError, match="mixed_bfloat16"):
        config.check()


def test_xla_with_several_replicas_is_a_usage_error():
    config = task.TrainConfig(train_data_pattern="x", train_dir="y",
                              strategy="mirrored", jit_compile=True)
    with pytest.raises(app.UsageError, match="--strategy=default"):
        config.check()


def test_inference_under_bfloat16_and_xla(world, tmp_path):
    """inference's cache under mixed_bfloat16 with XLA: the float32 cache's
    segments, probabilities within PROBABILITY_TOLERANCE (and video
    probabilities too); a rerun under another precision refuses the parts
    the first wrote instead of mixing them."""
    train_dir = world["dirs"][("float32", False)]
    options = dict(segment_labels_file=str(world["data"] /
                                           "segment_label_ids.csv"),
                   video_train_dir=train_dir, num_classes=60)
    pattern = str(world["data"] / "test-*.tfrecord")
    caches = {}
    for policy, jit_compile in (("float32", False), ("mixed_bfloat16", True)):
        cache_dir = str(tmp_path / policy)
        cache_builder.infer(train_dir, pattern, None, 10, 16,
                            cache_dir=cache_dir, mixed_precision=policy,
                            jit_compile=jit_compile, **options)
        caches[policy] = cache.ProbabilityCache.open(cache_dir)
    reference, mixed = caches["float32"], caches["mixed_bfloat16"]
    np.testing.assert_array_equal(mixed.segment_ids, reference.segment_ids)
    for name in ("segment_probs", "video_probs"):
        difference = np.abs(np.asarray(getattr(mixed, name), np.float32)
                            - np.asarray(getattr(reference, name))).max()
        assert 0 < difference < PROBABILITY_TOLERANCE, (name, difference)
    with pytest.raises(ValueError, match="mixed_precision"):
        cache_builder.infer(train_dir, pattern, None, 10, 16,
                            cache_dir=str(tmp_path / "float32"),
                            mixed_precision="mixed_bfloat16", **options)


def test_eval_under_bfloat16_and_xla(world):
    """eval's model modes under mixed_bfloat16 with XLA score the run as
    float32 does: GAP@20 and MAP@K within 0.01 (probabilities move by
    < 2e-2)."""
    train_dir = world["dirs"][("float32", False)]
    scores = {}
    for policy, jit_compile in (("float32", False), ("mixed_bfloat16", True)):
        options = dict(mixed_precision=policy, jit_compile=jit_compile)
        scores[policy] = (
            evaluate.evaluate_model_gap(train_dir, world["files"]["validate"],
                                        num_classes=60, **options),
            evaluate.evaluate_model(
                str(world["data"] / "validate-*.tfrecord"), train_dir, 50,
                segment_labels_file=str(world["data"] /
                                        "segment_label_ids.csv"),
                num_classes=60, **options))
    for reference, mixed in zip(scores["float32"], scores["mixed_bfloat16"]):
        assert abs(mixed - reference) < 0.01, scores
